"""The discrete host loop with budgets and the learning-curve stop (jnas.runner.discrete).

A scripted multi-fidelity strategy (each round: a given architecture at a given budget)
drives the loop; children are "trained" by a fake ``train_child`` whose curves are a known
function of the architecture and budget (no compilation), except in the test that trains
real children. Checked: each budget becomes a Fidelity and its own evaluation, the early
stop sees the best reward at its budget from earlier rounds only, the child-epoch
accounting, a fidelity the space cannot apply, and resume in the middle of a bracket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax.numpy as jnp
import pytest

from experiments.configs import nasrl_hyperband_tiny
from jnas.config import with_overrides
from jnas.estimation import curves, reference
from jnas.runner import discrete
from jnas.spaces import child as child_lib
from jnas.spaces import discrete as discrete_space
from jnas.spaces.base import Fidelity, FidelityError, make_space
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies.base import DiscreteStrategy, NoParams

# Round r asks architecture CODES[r] at budget index LEVELS[r] of (1, 5) epochs: three at 1
# epoch, two of them again at 5 (a rung), then two new ones at 5.
CODES = (28, 9, 17, 28, 9, 5, 12)
LEVELS = (0, 0, 0, 1, 1, 1, 1)


@dataclasses.dataclass(frozen=True)
class _Scripted(DiscreteStrategy):
    spec: discrete_space.DecisionSpec
    population_size: int = 1
    budgets: tuple = (1.0, 5.0)
    budget_resource: str = "epochs"

    @property
    def default_params(self):
        return NoParams()

    def init(self, key, params=None):
        return {"t": jnp.int32(0), "budget": jnp.zeros((1,), jnp.int32), "told": jnp.float32(0)}

    def ask(self, key, state, params=None):
        t = state["t"]
        arch = discrete_space.from_code(self.spec, jnp.asarray(CODES)[t])[None]
        return arch, dict(state, budget=jnp.asarray(LEVELS)[t][None])

    def fidelities(self, state):
        return state["budget"]

    def tell(self, state, archs, rewards, params=None):
        state = dict(state, t=state["t"] + 1, told=state["told"] + rewards.sum())
        return state, {"told": state["told"]}


def _final(text: str, epochs: int) -> float:
    """The fake final accuracy of ``text`` trained ``epochs`` epochs."""
    q = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") / 2**32
    return round((0.3 + 0.6 * q) * (1 - 0.3 / epochs), 6)


def _fake_curve(text, epochs):
    final = _final(text, epochs)
    return [
        round(final - 0.2 * (final - 0.1) * (e**-1.0 - epochs**-1.0), 6)
        for e in range(1, epochs + 1)
    ]


class _FakeTraining:
    """``NasRLSpace.train_child`` replaced: the curve of :func:`_fake_curve`, shown to the
    monitor epoch by epoch as ``fit_classifier`` does; records each call."""

    def __init__(self, monkeypatch):
        self.calls = []
        fake = self

        def train_child(space, arch, train, val, *, fidelity, config, key, monitor=None):
            text = space.to_text(arch)
            fake.calls.append((text, fidelity))
            curve = _fake_curve(text, fidelity.epochs)
            steps, per_epoch = child_lib.planned_steps(config, fidelity, train[0].shape[0])
            if monitor is None:
                return curve[-1]
            for e in range(1, len(curve) + 1):
                if e < len(curve) and monitor(tuple(curve[:e]), float(len(curve))):
                    break
            return child_lib.ChildResult(
                accuracy=curve[e - 1],
                epochs=float(e),
                planned_epochs=float(len(curve)),
                steps=e * per_epoch,
                steps_per_epoch=per_epoch,
                curve=tuple(curve[:e]),
                stopped=e < len(curve),
            )

        monkeypatch.setattr(NasRLSpace, "train_child", train_child)


def _config(data_dir, **overrides):
    config = nasrl_hyperband_tiny.get_config()
    config.data.data_dir = data_dir
    config.search.num_devices = 1
    config.search.rounds = len(CODES)
    return with_overrides(config, overrides)


def _rows(workdir):
    with open(os.path.join(workdir, discrete.HISTORY)) as f:
        lines = [json.loads(ln) for ln in f]
    return lines[0]["header"], lines[1:]


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in ("train_s", "device")} for r in rows]


def test_each_budget_is_a_fidelity_and_its_own_evaluation(tmp_path, fake_fmnist_dir, monkeypatch):
    fake = _FakeTraining(monkeypatch)
    config = _config(fake_fmnist_dir)
    space = make_space(config.space)
    summary = discrete.search(config, str(tmp_path), strategy=_Scripted(space.spec))
    texts = [space.to_text(discrete_space.from_code(space.spec, c)) for c in CODES]
    budgets = [(1.0, 5.0)[i] for i in LEVELS]
    assert fake.calls == [(t, Fidelity(epochs=int(b))) for t, b in zip(texts, budgets)]
    _, rows = _rows(str(tmp_path))
    assert [(r["arch"], r["budget"], r["epochs"]) for r in rows] == list(
        zip(texts, budgets, budgets)
    )
    # 64 search-train images at batch 16: 4 steps an epoch.
    assert [r["steps"] for r in rows] == [4 * int(b) for b in budgets]
    assert [r["reward"] for r in rows] == [_final(t, int(b)) for t, b in zip(texts, budgets)]
    # The best is chosen among the evaluations at the largest budget.
    at_full = [r for r in rows if r["budget"] == 5.0]
    best = max(at_full, key=lambda r: r["reward"])
    assert (summary["best_arch"], summary["best_reward"]) == (best["arch"], best["reward"])
    # Child-epochs: 3 x 1 + 4 x 5 trained, against 5 architectures x 5 epochs.
    assert summary["num_archs"] == 5 and summary["child_steps"] == 4 * 23
    assert (summary["child_epochs"], summary["child_epochs_full"]) == (23.0, 25.0)
    assert summary["child_epochs_saved"] == 2.0


def test_the_curve_stop_sees_the_best_of_earlier_rounds_at_its_budget(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    fake = _FakeTraining(monkeypatch)
    decisions = []
    real = curves.CurveStopper.should_stop

    def should_stop(self, curve, best, final_epoch):
        stop = real(self, curve, best, final_epoch)
        decisions.append((tuple(curve), best, final_epoch, stop))
        return stop

    monkeypatch.setattr(curves.CurveStopper, "should_stop", should_stop)
    config = _config(fake_fmnist_dir, **{"early_stop.enabled": True, "early_stop.min_points": 2})
    space = make_space(config.space)
    summary = discrete.search(config, str(tmp_path), strategy=_Scripted(space.spec))
    header, rows = _rows(str(tmp_path))
    assert header["early_stop"]["threshold"] == 0.05 and header["early_stop"]["min_points"] == 2
    # The noise floor: at least the binomial standard error bound 0.5 / sqrt(64 images).
    assert header["early_stop"]["noise_floor"] == 0.0625
    stopper = curves.CurveStopper(min_points=2, noise_floor=0.0625)
    # Only the 5-epoch children are asked (after epochs 1 to 4); each against the best
    # finished 5-epoch reward of the rounds before its own.
    expected = []
    for r, row in enumerate(rows):
        if row["budget"] != 5.0:
            continue
        earlier = [x["reward"] for x in rows[:r] if x["budget"] == 5.0 and not x.get("stopped")]
        best = max(earlier, default=None)
        curve = _fake_curve(row["arch"], 5)
        for e in range(1, int(row["epochs"]) + 1 if row.get("stopped") else 5):
            stop = real(stopper, curve[:e], best, 5.0)
            expected.append((tuple(curve[:e]), best, 5.0, stop))
    assert decisions == expected
    stopped = [r for r in rows if r.get("stopped")]
    assert stopped, "this script's curves stop at least one child"
    for r in stopped:
        assert r["epochs"] < 5 and r["curve"] == _fake_curve(r["arch"], 5)[: int(r["epochs"])]
        assert r["reward"] == r["curve"][-1] and r["steps"] == 4 * r["epochs"]
    trained = sum(r["epochs"] for r in rows)
    assert summary["num_stopped"] == len(stopped)
    assert summary["child_epochs"] == trained and summary["child_epochs_full"] == 25.0
    assert summary["child_epochs_saved"] == pytest.approx(25.0 - trained) and trained < 23

    # The reference trains every architecture for 5 epochs: those the search trained at 5
    # and did not stop are reused, the others trained now (none of them stopped).
    fake.calls.clear()
    ref = reference.train_fully(str(tmp_path), strategy=_Scripted(space.spec), log=lambda *a: 0)
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    kept = {r["arch"] for r in rows if r["budget"] == 5.0 and not r.get("stopped")}
    assert fake.calls == [(t, Fidelity(epochs=5)) for t in archs if t not in kept]
    assert [(c["arch"], c["reward"], c["reused"]) for c in ref["children"]] == [
        (t, _final(t, 5), t in kept) for t in archs
    ]
    best = max(archs, key=lambda t: _final(t, 5))
    assert (ref["reference_best_arch"], ref["reference_best_reward"]) == (best, _final(best, 5))
    assert ref["search_best_arch"] == summary["best_arch"]
    chosen = _final(summary["best_arch"], 5)
    assert ref["accuracy_loss"] == pytest.approx(_final(best, 5) - chosen)
    assert ref["child_epochs_reference"] == 25.0 and ref["full_fidelity"] == {"epochs": 5}
    assert json.load(open(tmp_path / "reference.json"))["accuracy_loss"] == ref["accuracy_loss"]


def test_a_fidelity_the_space_cannot_apply_stops_before_anything_runs(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    fake = _FakeTraining(monkeypatch)
    config = _config(fake_fmnist_dir, **{"child.resolution": 32})
    space = make_space(config.space)
    with pytest.raises(FidelityError, match="resolution = 32 is above the images' 28"):
        discrete.search(config, str(tmp_path / "a"), strategy=_Scripted(space.spec))
    monkeypatch.setattr(NasRLSpace, "FIDELITIES", frozenset({"epochs", "num_steps"}))
    strategy = _Scripted(space.spec, budget_resource="width")
    with pytest.raises(FidelityError, match="cannot apply the fidelity \\['width'\\]"):
        discrete.search(_config(fake_fmnist_dir), str(tmp_path / "b"), strategy=strategy)
    assert fake.calls == []
    for name in ("a", "b"):
        assert not os.path.exists(tmp_path / name / discrete.HISTORY)
        assert not os.path.exists(tmp_path / name / "checkpoints")


def test_a_run_stopped_in_the_middle_of_a_rung_resumes_to_the_same_result(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    """Stopped by an error right after round 3's child (the first of the 3-epoch rung) was
    written, then rerun: the same history, metrics and summary as an uninterrupted run."""
    _FakeTraining(monkeypatch)
    overrides = {"early_stop.enabled": True, "early_stop.min_points": 2}
    config = _config(fake_fmnist_dir, **overrides)
    space = make_space(config.space)
    ref = discrete.search(config, str(tmp_path / "ref"), strategy=_Scripted(space.spec))

    add = discrete.History.add

    class Killed(Exception):
        pass

    def add_then_die(self, row):
        add(self, row)
        if row["round"] == 3:
            raise Killed

    monkeypatch.setattr(discrete.History, "add", add_then_die)
    work = str(tmp_path / "work")
    with pytest.raises(Killed):
        discrete.search(config, work, strategy=_Scripted(space.spec))
    monkeypatch.setattr(discrete.History, "add", add)
    again = discrete.search(config, work, strategy=_Scripted(space.spec))
    drop = ("search_wall_s", "train_s_total")
    assert {k: v for k, v in again.items() if k not in drop} == {
        k: v for k, v in ref.items() if k not in drop
    }
    assert _untimed(_rows(work)[1]) == _untimed(_rows(str(tmp_path / "ref"))[1])
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rs]
    metrics = lambda d: strip(json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")))
    assert metrics(work) == metrics(str(tmp_path / "ref"))


@pytest.mark.slow
def test_hyperband_sigkilled_in_the_middle_of_a_bracket_resumes_bitwise(
    repo_root, run_script, tmp_path, fake_fmnist_dir
):
    """nasrl_hyperband_tiny (real training, the curve stop on), SIGKILLed once checkpoint 3
    was saved and round 3's child (bracket s=1's promotion to 3 epochs) was written, then
    rerun: history, metrics, summary and the last checkpoint equal an uninterrupted run's,
    and the promoted child is not trained again. About 1 min on the 2-core CPU."""
    from resume_test import _jsonl, _kill_and_resume, _same_checkpoints

    overrides = {"data.data_dir": fake_fmnist_dir, "early_stop.enabled": True}

    def killed_in_round_3(workdir):  # bracket s=1's promotion to 3 epochs was written
        assert [(r["round"], r["budget"]) for r in _rows(workdir)[1]][-1] == (3, 3.0)

    ref, work, summary = _kill_and_resume(
        repo_root,
        run_script,
        tmp_path,
        "search",
        "nasrl_hyperband_tiny",
        "3+1",
        overrides,
        killed_in_round_3,
    )
    drop = ("search_wall_s", "train_s_total")
    expected = json.load(open(os.path.join(ref, "summary.json")))
    assert {k: v for k, v in summary.items() if k not in drop} == {
        k: v for k, v in expected.items() if k not in drop
    }
    assert _untimed(_rows(work)[1]) == _untimed(_rows(ref)[1])
    assert _jsonl(work, "metrics.jsonl") == _jsonl(ref, "metrics.jsonl")
    _same_checkpoints(ref, work)
