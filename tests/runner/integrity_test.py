"""Nothing poisoned or lost on disk, in every host loop: no checkpoint holds a NaN or an
infinity (a rerun resumes from the last good one), a torn last line of a JSON-lines file (a
kill in the middle of its write) is dropped on resume, the final summary survives a kill
after the last checkpoint, and a retraining resumed with another network rewrites nothing.

The runs use the configs and data of tests/runner/resume_test.py (the same compiled programs:
the persistent compilation cache serves them); a discrete search's children are not trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import darts_tiny, eval_tiny, nasrl_tiny
from jnas.config import with_overrides
from jnas.runner import discrete
from jnas.runner import search as search_lib
from jnas.runner import train as train_lib
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError, write_json
from jnas.runner.errors import NonFiniteLossError, check_finite, first_non_finite
from jnas.runner.writers import JsonlError, MetricWriter, read_jsonl, truncate_jsonl, write_text
from jnas.spaces.base import make_space
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies.base import NoParams
from jnas.strategies.random_search import RandomSearch

TORN = '{"step": 99, "kind": "train_step", "train_lo'  # a record cut short by a kill


def _untimed(record):
    """A JSON record without its timings (``*_s``), which differ between runs."""
    return {k: v for k, v in record.items() if not k.endswith("_s")}


def _checkpoints(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _snapshot(workdir: str) -> dict[str, str]:
    """Every file under ``workdir`` -> the SHA-256 of its bytes."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _tear(path: str) -> None:
    with open(path, "a") as f:
        f.write(TORN)


def _nan_floats(tree):
    return jax.tree.map(lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _all_finite_checkpoints(workdir: str) -> None:
    import orbax.checkpoint as ocp

    ckpt = Checkpointer(workdir)
    for step in _checkpoints(workdir):
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        state = ckpt.manager.restore(step, args=args)["state"]
        assert first_non_finite(state) is None, (workdir, step)
    ckpt.close()


# --- the pieces ----------------------------------------------------------------------------


def test_jsonl_reader_drops_a_torn_last_line_and_names_other_damage(tmp_path, capsys):
    path = str(tmp_path / "m.jsonl")
    records = [{"step": s, "kind": "k", "x": s / 3} for s in (1, 2, 3)]
    intact = "".join(json.dumps(r) + "\n" for r in records)
    write_text(path, intact + TORN)
    assert read_jsonl(path) == records
    assert open(path).read() == intact + TORN  # reading alone changes nothing
    assert "incomplete last line" in capsys.readouterr().err
    assert read_jsonl(path, repair=True) == records
    assert open(path).read() == intact
    # A complete record without its newline is still a write cut short.
    write_text(path, intact + json.dumps({"step": 4}))
    assert read_jsonl(path, repair=True) == records and open(path).read() == intact
    # Damage no kill makes (a bad line before the last) is named; the file is left alone.
    damaged = intact.replace(json.dumps(records[1]), '{"step": 2, "x": ]') + TORN
    write_text(path, damaged)
    with pytest.raises(JsonlError, match=r"m\.jsonl line 2 is not JSON"):
        read_jsonl(path, repair=True)
    with pytest.raises(JsonlError, match="line 2"):
        truncate_jsonl(path, 10)
    assert open(path).read() == damaged
    write_text(path, intact + "[1, 2]\n")
    with pytest.raises(JsonlError, match="line 4 is not a JSON object"):
        read_jsonl(path)
    assert read_jsonl(str(tmp_path / "missing.jsonl")) == []


def test_truncate_keeps_lines_byte_for_byte_and_rewrites_only_when_needed(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    lines = ['{"step": 1, "kind": "a", "v": 0.1}', '{"kind": "a", "step": 2}']
    lines += ['{"step": 2, "kind": "final"}', '{"step": 3, "kind": "a"}']
    write_text(path, "\n".join(lines) + "\n")
    inode = os.stat(path).st_ino
    truncate_jsonl(path, 3)  # nothing to drop: the file is not rewritten
    assert os.stat(path).st_ino == inode
    truncate_jsonl(path, 2, drop_kinds=("final",))
    assert open(path).read() == "\n".join(lines[:2]) + "\n"
    _tear(path)
    MetricWriter(str(tmp_path), resume_step=2, tensorboard=False)  # what a resumed run does
    assert open(path).read() == "\n".join(lines[:2]) + "\n"
    MetricWriter(str(tmp_path), tensorboard=False)  # a fresh run keeps nothing
    assert open(path).read() == ""


def test_atomic_writes_leave_the_old_file_or_the_new(tmp_path, monkeypatch):
    path = str(tmp_path / "summary.json")
    write_json(path, {"a": 1})

    def killed(*args):
        raise KeyboardInterrupt  # a kill between the write and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"a": 2, "b": "x" * 10000})
    assert json.load(open(path)) == {"a": 1}


def test_checkpointer_never_saves_a_non_finite_state(tmp_path):
    ckpt = Checkpointer(str(tmp_path), hint="Lower the rate")
    good = {"w": np.ones(3, np.float32), "step": np.int32(1), "key": jax.random.key(0)}
    ckpt.save(1, good, {"n": 1})
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = dict(good, opt={"mu": np.array([0.0, bad_value], np.float32)})
        with pytest.raises(NonFiniteLossError) as err:
            ckpt.save(2, bad)
        message = str(err.value)
        assert f"['opt']['mu'] is {bad_value} at checkpoint 2" in message
        assert "last good checkpoint (step 1)" in message and "Lower the rate" in message
    assert ckpt.latest_step() == 1 and _checkpoints(str(tmp_path)) == [1]
    ckpt.close()


def test_check_finite_names_the_first_bad_value():
    check_finite({"loss": 1.0, "tree": {"a": np.ones(2), "n": 3}}, step=0, workdir="w",
                 last_checkpoint=None, hint="h")  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"^loss is inf at round 7; .*no checkpoint"):
        check_finite({"loss": np.float32(np.inf)}, step=7, workdir="w", last_checkpoint=None,
                     hint="h", unit="round")  # fmt: skip
    assert first_non_finite({"a": [np.ones(2), np.array([1.0, np.nan])]}) == "['a'][1]"
    assert first_non_finite({"a": np.ones(2), "i": np.int32(-1)}) is None


# --- the host loops ------------------------------------------------------------------------


def _search_config(data_dir):  # darts_tiny, as resume_test runs it: 2 epochs of 4 steps
    return with_overrides(darts_tiny.get_config(), {"data.data_dir": data_dir})


def _no_steps(monkeypatch, steps_class):
    monkeypatch.setattr(steps_class, "run", lambda *a: pytest.fail("stepped"))


def test_search_saves_no_poisoned_state_and_its_summary_survives_a_kill(
    tmp_path, fake_fmnist_dir, monkeypatch, capsys
):
    config, workdir = _search_config(fake_fmnist_dir), str(tmp_path / "search")
    original = search_lib._Steps.run

    def poisoned(self, state, step, train, val):
        state, m = original(self, state, step, train, val)
        if step == 5:  # finite losses and norms; the momentum that checkpoint 6 would hold
            state = state.replace(w_opt_state=_nan_floats(state.w_opt_state))
        return state, m

    with monkeypatch.context() as mp:
        mp.setattr(search_lib._Steps, "run", poisoned)
        with pytest.raises(NonFiniteLossError, match=r"w_opt_state.* is nan at checkpoint 6"):
            search_lib.search(config, workdir)
    assert _checkpoints(workdir) == [3, 4]
    summary = search_lib.search(config, workdir)  # resumes from the last good checkpoint
    assert "resuming from step 4" in capsys.readouterr().out
    assert _checkpoints(workdir)[-1] == 8
    _all_finite_checkpoints(workdir)
    assert isinstance(summary["val_eval_acc"], float) and "train_loss" in summary

    # Killed after the final checkpoint (and the final record) but before summary.json and
    # genotype.txt, in the middle of writing a metrics and a genotypes line.
    files = {n: open(os.path.join(workdir, n)).read() for n in ("metrics.jsonl", "genotypes.jsonl")}
    genotype = open(os.path.join(workdir, "genotype.txt")).read()
    for name in ("summary.json", "genotype.txt"):
        os.remove(os.path.join(workdir, name))
    for name in files:
        _tear(os.path.join(workdir, name))
    _no_steps(monkeypatch, search_lib._Steps)
    again = search_lib.search(config, workdir)
    assert _untimed(again) == _untimed(summary)  # the final metrics too
    assert json.load(open(os.path.join(workdir, "summary.json"))) == again
    assert open(os.path.join(workdir, "genotype.txt")).read() == genotype
    for name, text in files.items():  # one final record, no torn line
        assert open(os.path.join(workdir, name)).read() == text, name
    # A rerun of the finished search keeps its record as it is.
    before = _snapshot(workdir)
    assert search_lib.search(config, workdir) == again
    after = _snapshot(workdir)
    assert {k: v for k, v in after.items() if "tb" not in k} == {
        k: v for k, v in before.items() if "tb" not in k
    }


def _train_config(data_dir, **overrides):  # resume_test's retraining: 2 epochs of 4 steps
    return with_overrides(eval_tiny.get_config(), {"data.data_dir": data_dir, **overrides})


def test_retraining_saves_no_poisoned_state_keeps_its_results_and_refuses_another_network(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    config, workdir = _train_config(fake_fmnist_dir), str(tmp_path / "train")
    original = train_lib._Steps.run

    def poisoned(self, state, step, images, labels):
        state, m = original(self, state, step, images, labels)
        if step == 5:  # finite loss and weights; the momentum that checkpoint 6 would hold
            state = state.replace(opt_state=_nan_floats(state.opt_state))
        return state, m

    with monkeypatch.context() as mp:
        mp.setattr(train_lib._Steps, "run", poisoned)
        with pytest.raises(NonFiniteLossError, match=r"opt_state.* is nan at checkpoint 6"):
            train_lib.train(config, workdir)
    assert _checkpoints(workdir) == [3, 4]
    results = train_lib.train(config, workdir)  # resumes from step 4
    assert _checkpoints(workdir)[-1] == 8 and results["steps"] == 8
    _all_finite_checkpoints(workdir)
    _all_finite_checkpoints(os.path.join(workdir, "best"))

    # Killed after the final checkpoint and record, before results.json; a torn metrics line.
    metrics = open(os.path.join(workdir, "metrics.jsonl")).read()
    os.remove(os.path.join(workdir, "results.json"))
    _tear(os.path.join(workdir, "metrics.jsonl"))
    _no_steps(monkeypatch, train_lib._Steps)
    monkeypatch.setattr(train_lib._Steps, "evaluate", lambda *a: pytest.fail("evaluated"))
    again = train_lib.train(config, workdir)
    assert _untimed(again) == _untimed(results)  # the same test accuracy, not re-evaluated
    assert json.load(open(os.path.join(workdir, "results.json"))) == again
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [_untimed(r) for r in records] == [_untimed(json.loads(x)) for x in metrics.splitlines()]

    # Another network (C) or genotype, even with the config change allowed: refused, and not
    # a byte of the workdir changes.
    before = _snapshot(workdir)
    for overrides, message in (({"model.C": 6}, "does not fit"), ({"genotype": "DARTS_V1"}, "")):
        with pytest.raises(IncompatibleCheckpointError, match=message or "another genotype"):
            other = _train_config(fake_fmnist_dir, **overrides)
            train_lib.train(other, workdir, allow_config_change=True)
        assert _snapshot(workdir) == before
    assert train_lib.train(config, workdir) == again  # finished: its record is kept
    assert {k: v for k, v in _snapshot(workdir).items() if "tb" not in k} == {
        k: v for k, v in before.items() if "tb" not in k
    }


@dataclasses.dataclass(frozen=True)
class _Poisoned(RandomSearch):
    """Random search whose state gets a NaN when it is told round ``poison`` (-1: never)."""

    poison: int = -1

    @property
    def default_params(self):
        return NoParams()

    def init(self, key, params=None):
        return {"inner": super().init(key, params), "w": jnp.zeros(2), "round": jnp.int32(0)}

    def ask(self, key, state, params=None):
        archs, inner = super().ask(key, state["inner"], params)
        return archs, dict(state, inner=inner)

    def tell(self, state, archs, rewards, params=None):
        inner, metrics = super().tell(state["inner"], archs, rewards, params)
        w = jnp.where(state["round"] == self.poison, jnp.nan, state["w"] + 1.0)
        return {"inner": inner, "w": w, "round": state["round"] + 1}, metrics


def test_discrete_search_saves_no_poisoned_state_and_its_summary_survives_a_kill(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    trained = []

    def reward(space, arch, *args, **kwargs):  # no child training: a reward from the text
        trained.append(space.to_text(arch))
        return len(trained) / 100.0

    monkeypatch.setattr(NasRLSpace, "train_child", reward)
    config = with_overrides(
        nasrl_tiny.get_config(), {"data.data_dir": fake_fmnist_dir, "search.num_devices": 1}
    )
    workdir, m = str(tmp_path / "discrete"), config.search.children_per_round
    spec = make_space(config.space).spec
    with pytest.raises(NonFiniteLossError, match=r"state after tell\['w'\] is nan at round 1"):
        discrete.search(config, workdir, strategy=_Poisoned(spec, m, 1))
    assert _checkpoints(workdir) == [1]
    assert [r["step"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))] == [1]
    first = list(trained)
    summary = discrete.search(config, workdir, strategy=_Poisoned(spec, m))  # from round 1
    assert _checkpoints(workdir)[-1] == 3 and summary["rounds"] == 3
    assert not set(trained[len(first) :]) & set(first)  # round 1's children not trained again
    _all_finite_checkpoints(workdir)

    # Killed after the last checkpoint, before summary.json, while a metrics line was written.
    metrics = open(os.path.join(workdir, "metrics.jsonl")).read()
    os.remove(os.path.join(workdir, "summary.json"))
    _tear(os.path.join(workdir, "metrics.jsonl"))
    count = len(trained)
    again = discrete.search(config, workdir, strategy=_Poisoned(spec, m))
    assert len(trained) == count and _untimed(again) == _untimed(summary)
    assert json.load(open(os.path.join(workdir, "summary.json"))) == again
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == metrics
