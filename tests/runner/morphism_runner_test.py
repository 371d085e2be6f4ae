"""End to end: a morphism search (jnas.runner.morphism) on the tiny config: the history, the
checkpoints of trained variables, recovery of a network checkpointed but not written, a NaN
reward, config validation; Hyperband's brackets over morphisms (BOHB over morphisms), the
curve-based stop and a NaN in a curve, with fake child training; kill and resume (with and
without brackets) and the retraining under -m slow."""

import hashlib
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import morphism_bo_tiny, morphism_bohb_tiny
from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.estimation.curves import CurveError
from jnas.runner import morphism as runner
from jnas.runner import run_search
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError
from jnas.runner.discrete import HistoryError, NonFiniteRewardError
from jnas.spaces import child as child_lib
from jnas.spaces import morphism
from jnas.spaces.base import FidelityError
from jnas.spaces.graph import GraphSpace
from jnas.validate import check_search_config


def _config(data_dir, **overrides):
    config = morphism_bo_tiny.get_config()
    config.data.data_dir = data_dir
    config.search.num_devices = 1
    config.search.rounds = 1
    return with_overrides(config, overrides)


def _rows(workdir):
    with open(os.path.join(workdir, runner.HISTORY)) as f:
        lines = [json.loads(ln) for ln in f]
    return lines[0]["header"], lines[1:]


def _untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_s") and k != "device"} for r in rows]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("morphism"))
    config = _config(fake_fmnist_dir)
    summary = run_search(config, workdir)  # routed by the strategy's kind
    return config, workdir, summary


def test_history_checkpoints_and_best(finished):
    config, workdir, summary = finished
    header, rows = _rows(workdir)
    assert header["strategy"] == "morphism_bo" and header["space"]["name"] == "graph"
    space = GraphSpace(**{k: v for k, v in header["space"].items() if k != "name"})
    assert [r["id"] for r in rows] == [0, 1] and [r["round"] for r in rows] == [0, 1]
    assert rows[0]["parent"] is None and rows[0]["arch"] == space.start_graph().to_text()
    child = rows[1]
    assert child["parent"] == 0 and child["edits"] and child["acq"]["acq"] >= child["acq"]["mean"]
    # the edits, applied to the parent's graph one after the other, give the child's graph
    graph = space.parse(rows[0]["arch"])
    names = [str(e) for e in morphism.possible_edits(space, graph)]
    assert child["edits"][0] in names
    for r in rows:
        assert 0.0 <= r["reward"] <= 1.0 and r["steps"] == 4 and r["params"] > 0
        assert r["wall_s"] >= r["train_s"] > 0
    # every network's variables are checkpointed at step id + 1, with its row
    ckpt = Checkpointer(workdir, max_to_keep=None)
    assert sorted(ckpt.manager.all_steps()) == [1, 2]
    ckpt.close()
    best = max(rows, key=lambda r: r["reward"])
    assert summary["best_arch"] == best["arch"] and summary["best_id"] == best["id"]
    with open(os.path.join(workdir, "best_arch.txt")) as f:
        assert f.read().strip() == best["arch"]
    assert all(os.path.exists(os.path.join(workdir, p)) for p in summary["best_graph"])
    metrics = [json.loads(ln) for ln in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[-1]["best_reward"] == best["reward"]


class _Stop(Exception):
    pass


def test_inherited_variables_are_the_morphed_parent(finished, monkeypatch):
    # The child started from its parent's trained variables, morphed edit by edit.
    config, workdir, _ = finished
    _, rows = _rows(workdir)
    seen = {}
    real = GraphSpace.train_child

    def spy(space, arch, *a, init_variables=None, **k):
        seen["init"] = init_variables
        raise _Stop  # before training

    monkeypatch.setattr(GraphSpace, "train_child", spy)
    work = workdir + "_spy"
    shutil.copytree(workdir, work)
    _truncate(work, 1)  # forget the child: it is proposed again
    with pytest.raises(_Stop):
        run_search(config, work)
    monkeypatch.setattr(GraphSpace, "train_child", real)
    assert seen["init"] is not None and set(seen["init"]) == {"params", "batch_stats"}


def _truncate(workdir, keep):
    """Drop the history rows and checkpoints of the networks with id >= keep."""
    with open(os.path.join(workdir, runner.HISTORY)) as f:
        lines = f.readlines()
    with open(os.path.join(workdir, runner.HISTORY), "w") as f:
        f.writelines(lines[: 1 + keep])
    for step in os.listdir(os.path.join(workdir, "checkpoints")):
        if step.isdigit() and int(step) > keep:
            shutil.rmtree(os.path.join(workdir, "checkpoints", step))


def test_network_checkpointed_but_not_written_is_recovered(finished, tmp_path, monkeypatch):
    config, workdir, summary = finished
    work = str(tmp_path / "w")
    shutil.copytree(workdir, work)
    path = os.path.join(work, runner.HISTORY)
    lines = open(path).readlines()
    with open(path, "w") as f:  # a kill between the checkpoint and the history row
        f.writelines(lines[:-1])
    monkeypatch.setattr(GraphSpace, "train_child", lambda *a, **k: pytest.fail("trained"))
    again = run_search(config, work)
    assert _untimed(_rows(work)[1]) == _untimed(_rows(workdir)[1])
    assert again["best_arch"] == summary["best_arch"]
    # a history row whose variables are gone is refused by name
    shutil.rmtree(os.path.join(work, "checkpoints", "2"))
    with pytest.raises(IncompatibleCheckpointError, match=r"networks \[1\]"):
        run_search(config, work)


def test_nan_reward_is_named_and_loses_nothing(finished, tmp_path, monkeypatch):
    config, workdir, _ = finished
    work = str(tmp_path / "w")
    shutil.copytree(workdir, work)
    before = open(os.path.join(work, runner.HISTORY)).read()

    def nan(space, arch, train, val, *, init_variables=None, **kwargs):
        return child_lib.ChildResult(float("nan"), 1.0, 1.0, 4, 4, variables=init_variables)

    monkeypatch.setattr(GraphSpace, "train_child", nan)
    config = with_overrides(config, {"search.rounds": 2})
    with pytest.raises(NonFiniteRewardError, match="has reward nan"):
        runner.search(config, work, allow_config_change=True)
    assert open(os.path.join(work, runner.HISTORY)).read() == before
    ckpt = Checkpointer(work, max_to_keep=None)
    assert sorted(ckpt.manager.all_steps()) == [1, 2]
    ckpt.close()


def test_bad_config_is_refused_before_anything_runs(fake_fmnist_dir, tmp_path):
    config = _config(
        fake_fmnist_dir,
        **{
            "morphism_bo.beta": -1.0,
            "morphism_bo.decay": 1.5,
            "space.input_channels": 3,
            "search.time_budget_s": -5.0,
        },
    )
    with pytest.raises(ConfigError) as e:
        check_search_config(config)
    message = str(e.value)
    for key in ("morphism_bo.beta", "morphism_bo.decay", "space.input_channels", "time_budget_s"):
        assert key in message, message
    with pytest.raises(ConfigError, match="morphism_bo.bogus"):
        run_search(_bad_option(fake_fmnist_dir), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def _bad_option(data_dir):
    config = _config(data_dir)
    with config.unlocked():
        config.morphism_bo.bogus = 1
    return config


def test_retrain_config_is_checked(fake_fmnist_dir, tmp_path):
    config = _config(fake_fmnist_dir, **{"retrain.epochs": 0})
    assert runner.is_morphism_config(config)
    with pytest.raises(ConfigError, match="retrain.epochs") as e:
        runner.retrain(config, str(tmp_path / "r"))
    assert "retrain.arch" in str(e.value)
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.slow
def test_retrain_best_graph(finished, tmp_path):
    config, workdir, summary = finished
    config = with_overrides(config, {"retrain.search_workdir": workdir})
    results = runner.retrain(config, str(tmp_path / "r"))
    assert results["arch"] == summary["best_arch"] and 0.0 <= results["test_acc"] <= 1.0
    assert results["num_test"] == 128 and results["epochs"] == 1
    assert runner.retrain(config, str(tmp_path / "r")) == results  # a rerun returns them


@pytest.mark.slow
def test_kill_and_resume(repo_root, run_script, tmp_path, fake_fmnist_dir):
    # Killed right after network 1's checkpoint, before its history row; the rerun takes the
    # row from the checkpoint and goes on: the same history as an uninterrupted run.
    from tests.runner.resume_test import _jsonl, _kill_and_resume

    overrides = {"data.data_dir": fake_fmnist_dir, "search.num_devices": 1}
    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "search", "morphism_bo_tiny", 2, overrides
    )
    assert _jsonl(workdir, "history.jsonl") == _jsonl(ref, "history.jsonl")
    assert _jsonl(workdir, "metrics.jsonl") == _jsonl(ref, "metrics.jsonl")
    with open(os.path.join(ref, "summary.json")) as f:
        expected = json.load(f)
    assert summary["best_arch"] == expected["best_arch"]
    assert summary["best_reward"] == expected["best_reward"]
    assert np.isfinite(summary["best_reward"])


# --------------------------------------------------------------------------------------------
# Multi-fidelity: Hyperband's brackets over morphisms (BOHB over morphisms with morphism_bo).
# Children are "trained" by a fake train_child whose learning curve is a known function of the
# graph and its budget (no compilation); the variables are the morphed parent's (or a fresh
# initialisation), so checkpoints, restores and morphing are the real ones.


def _final(text: str, epochs: int) -> float:
    """The fake final accuracy of ``text`` trained ``epochs`` epochs (the start network of
    the tiny config: 0.9; others 0.2-0.6 by a hash)."""
    if text == GraphSpace(**_tiny_space()).start_graph().to_text():
        return round(0.9 * (1 - 0.1 / epochs), 6)
    q = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") / 2**32
    return round((0.2 + 0.4 * q) * (1 - 0.3 / epochs), 6)


def _fake_curve(text, epochs):
    final = _final(text, epochs)
    return [round(final - 0.02 * (epochs - e) / epochs, 6) for e in range(1, epochs + 1)]


def _tiny_space():
    return {k: v for k, v in morphism_bo_tiny.get_config().space.items() if k != "name"}


class _FakeTraining:
    """``GraphSpace.train_child`` replaced (see above): the variables come back as they
    went in (a network without parent: 0.5 everywhere, in its variables' shapes); records
    ``(text, fidelity, init_variables)`` per call. ``nan``: texts whose second curve point
    is NaN."""

    def __init__(self, monkeypatch, nan=()):
        self.calls = []
        fake = self

        def train_child(space, arch, train, val, *, fidelity, config, key, monitor=None,
                        init_variables=None, return_variables=False):  # fmt: skip
            text = space.to_text(arch)
            fake.calls.append((text, fidelity, init_variables))
            variables = init_variables
            if variables is None:  # the shapes of a fresh initialisation, without computing it
                model = space.network(arch, num_classes=config.num_classes, fidelity=fidelity)
                x = jax.ShapeDtypeStruct((1, *train[0].shape[1:]), jnp.float32)
                shapes = jax.eval_shape(model.init, key, x)
                variables = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), shapes)
            curve = _fake_curve(text, fidelity.epochs)
            if text in nan:
                curve[1] = float("nan")
            steps, per_epoch = child_lib.planned_steps(config, fidelity, train[0].shape[0])
            e = len(curve)
            for e in range(1, len(curve) + 1):
                if monitor is not None and e < len(curve) and monitor(tuple(curve[:e]), len(curve)):
                    break
            return child_lib.ChildResult(
                accuracy=curve[e - 1],
                epochs=float(e),
                planned_epochs=float(len(curve)),
                steps=e * per_epoch,
                steps_per_epoch=per_epoch,
                curve=tuple(curve[:e]) if monitor is not None else (),
                stopped=e < len(curve),
                variables=variables,
            )

        monkeypatch.setattr(GraphSpace, "train_child", train_child)


def _bohb(data_dir, **overrides):
    config = morphism_bohb_tiny.get_config()
    config.data.data_dir = data_dir
    config.search.num_devices = 1
    return with_overrides(config, overrides)


# Budgets 1 and 3 epochs, eta 3: bracket s=1 asks 3 new networks at 1 epoch and promotes the
# best to 3 epochs; bracket s=0 asks 2 new at 3 epochs. At round 3 budget 1 has 3
# evaluations (enough for the model), budget 3 two (the start network and the promoted one).
# t_min 0.3: 12 pops of the acquisition search (shorter edit sequences: cheaper morphing).
BOHB = {
    "child.epochs": 3,
    "hyperband.max_budget": 3.0,
    "hyperband.eta": 3.0,
    "morphism_bo.t_min": 0.3,
}


@pytest.fixture(scope="module")
def bohb_run(tmp_path_factory, fake_fmnist_dir):
    from jnas.strategies.morphism_bo import MorphismBO

    workdir = str(tmp_path_factory.mktemp("bohb"))
    config = _bohb(fake_fmnist_dir, **BOHB)
    asked, real = [], MorphismBO.propose

    def propose(self, space, trained, num, key, *, exclude=()):
        asked.append(([t.id for t in trained], num, sorted(exclude)))
        return real(self, space, trained, num, key, exclude=exclude)

    with pytest.MonkeyPatch.context() as mp:
        fake = _FakeTraining(mp)
        mp.setattr(MorphismBO, "propose", propose)
        summary = runner.search(config, workdir)
    return config, workdir, summary, fake.calls, asked


def test_bohb_over_morphisms_runs_hyperbands_brackets(bohb_run):
    config, workdir, summary, calls, asked = bohb_run
    header, rows = _rows(workdir)
    assert header["schedule"]["budgets"] == [1.0, 3.0] and header["schedule"]["eta"] == 3.0
    got = [(r["round"], r["budget"], r.get("bracket"), r.get("rung")) for r in rows]
    assert (
        got
        == [(0, 3.0, None, None)] + [(1, 1.0, 0, 0)] * 3 + [(2, 3.0, 0, 1)] + [(3, 3.0, 1, 0)] * 2
    )
    # Each evaluation is trained at its budget (epochs) and scored by it.
    assert [(t, f.epochs) for t, f, _ in calls] == [(r["arch"], int(r["budget"])) for r in rows]
    assert [r["reward"] for r in rows] == [_final(r["arch"], int(r["budget"])) for r in rows]
    # Successive halving: the best of round 1 by reward, the same network (parent, edits)
    # judged again, from its parent's morphed weights (the same start as at 1 epoch).
    top = max(rows[1:4], key=lambda r: r["reward"])
    promoted = rows[4]
    assert promoted["promoted_from"] == top["id"] and top["parent"] == 0
    assert (promoted["arch"], promoted["parent"], promoted["edits"]) == (
        top["arch"],
        top["parent"],
        top["edits"],
    )
    chex.assert_trees_all_equal(calls[promoted["id"]][2], calls[top["id"]][2])
    # New networks: morphism_bo's GP on the largest budget with 3 evaluations (round 1: none
    # has, the largest with any: the start network), morphed from those networks; nothing
    # evaluated is proposed again.
    assert asked[0] == ([0], 3, [rows[0]["arch"]])
    assert asked[1] == ([1, 2, 3], 2, sorted({r["arch"] for r in rows[:5]}))
    assert all(r["parent"] in (1, 2, 3) and r["acq"] for r in rows[5:])
    assert len({r["arch"] for r in rows}) == 6
    # The best is chosen at the largest budget; child-epochs in epochs of the full fidelity.
    best = max((r for r in rows if r["budget"] == 3.0), key=lambda r: r["reward"])
    assert (summary["best_id"], summary["best_reward"]) == (best["id"], best["reward"])
    assert summary["child_epochs"] == 3 + 3 * 1 + 3 + 2 * 3 == sum(r["epochs"] for r in rows)
    assert summary["child_epochs_full"] == 6 * 3 and summary["budgets"] == [1.0, 3.0]
    metrics = [json.loads(ln) for ln in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [m["budget"] for m in metrics] == [3.0, 1.0, 3.0, 3.0]


def test_bohb_stopped_in_the_middle_of_a_bracket_resumes_to_the_same_history(
    bohb_run, tmp_path, monkeypatch
):
    """Stopped by an error right after round 1's second network was written (in the middle
    of bracket s=1's first rung), then rerun: the same history and metrics as the
    uninterrupted run."""
    config, ref, summary, _, _ = bohb_run
    _FakeTraining(monkeypatch)
    add = runner.History.add

    class Killed(Exception):
        pass

    def add_then_die(self, row):
        add(self, row)
        if row["id"] == 2:
            raise Killed

    monkeypatch.setattr(runner.History, "add", add_then_die)
    work = str(tmp_path / "w")
    with pytest.raises(Killed):
        runner.search(config, work)
    assert [(r["round"], r["budget"]) for r in _rows(work)[1]] == [(0, 3.0), (1, 1.0), (1, 1.0)]
    monkeypatch.setattr(runner.History, "add", add)
    again = runner.search(config, work)
    assert _untimed(_rows(work)[1]) == _untimed(_rows(ref)[1])
    strip = lambda d: [
        {k: v for k, v in json.loads(x).items() if not k.endswith("_s")}
        for x in open(os.path.join(d, "metrics.jsonl"))
    ]
    assert strip(work) == strip(ref)
    assert (again["best_arch"], again["best_reward"]) == (
        summary["best_arch"],
        summary["best_reward"],
    )


def test_the_curve_stop_stops_a_morphism_child(tmp_path, fake_fmnist_dir, monkeypatch):
    # Budgets 1, 2, 4 epochs (eta 2): the start network (4 epochs, 0.88) is the best at 4
    # epochs when bracket s=2's last rung trains its promoted child for 4 epochs; that
    # child's flat curve near 0.4 is stopped after 2 epochs. Other children have no best at
    # their budget from earlier rounds, or too few points, and are not stopped.
    from jnas.estimation import curves

    _FakeTraining(monkeypatch)
    decisions, real = [], curves.CurveStopper.should_stop

    def should_stop(self, curve, best, final_epoch):
        stop = real(self, curve, best, final_epoch)
        decisions.append((tuple(curve), best, final_epoch, stop))
        return stop

    monkeypatch.setattr(curves.CurveStopper, "should_stop", should_stop)
    overrides = {"early_stop.enabled": True, "early_stop.min_points": 2}
    overrides["strategy"] = "morphism_walk"  # one edit a child: cheap to morph
    config = _bohb(fake_fmnist_dir, **{"hyperband.max_budget": 4.0, "search.rounds": 3})
    config = with_overrides(config, {"child.epochs": 4, **overrides})
    summary = runner.search(config, str(tmp_path))
    header, rows = _rows(str(tmp_path))
    assert [(r["round"], r["budget"]) for r in rows] == [(0, 4.0)] + [(1, 1.0)] * 4 + [
        (2, 2.0)
    ] * 2 + [(3, 4.0)]
    stopper = curves.CurveStopper(min_points=2, noise_floor=header["early_stop"]["noise_floor"])
    expected = []
    for row in rows:
        planned = int(row["budget"])
        earlier = [
            x["reward"]
            for x in rows
            if x["round"] < row["round"] and x["budget"] == row["budget"] and not x.get("stopped")
        ]
        best = max(earlier, default=None)
        curve = _fake_curve(row["arch"], planned)
        for e in range(1, int(row["epochs"]) + 1):  # after each epoch but the last
            if e < planned:
                expected.append(
                    (tuple(curve[:e]), best, planned, real(stopper, curve[:e], best, planned))
                )
    assert decisions == expected
    last = rows[-1]
    assert [r["id"] for r in rows if r.get("stopped")] == [last["id"]]
    e = int(last["epochs"])
    assert e < 4 and last["steps"] == 4 * e  # 64 images at batch 16: 4 steps an epoch
    assert last["curve"] == _fake_curve(last["arch"], 4)[:e] and last["reward"] == last["curve"][-1]
    assert summary["num_stopped"] == 1 and summary["best_id"] == 0


def test_a_nan_in_a_curve_is_named_and_loses_nothing(tmp_path, fake_fmnist_dir, monkeypatch):
    config = _config(fake_fmnist_dir, **{"early_stop.enabled": True, "early_stop.min_points": 2})
    config = with_overrides(config, {"child.epochs": 3, "strategy": "morphism_walk"})
    work = str(tmp_path / "w")
    _FakeTraining(monkeypatch)
    runner.search(config, work)  # the start network and one child
    before = open(os.path.join(work, runner.HISTORY)).read()
    _, rows = _rows(work)
    # Round 2's child has a NaN on its curve: the stop's check names it; nothing is written.
    fake = _FakeTraining(monkeypatch, nan=_NaNAll())
    config2 = with_overrides(config, {"search.rounds": 2})
    with pytest.raises(
        CurveError, match=r"network '.*' \(round 2\): the learning curve has a non-finite value nan"
    ):
        runner.search(config2, work, allow_config_change=True)
    assert open(os.path.join(work, runner.HISTORY)).read() == before
    assert [c[0] for c in fake.calls] and fake.calls[0][0] not in {r["arch"] for r in rows}
    # A history row whose curve holds a NaN is refused before anything trains.
    bad = str(tmp_path / "bad")
    shutil.copytree(work, bad)
    lines = open(os.path.join(bad, runner.HISTORY)).readlines()
    row = dict(json.loads(lines[-1]), curve=[0.5, float("nan")])
    lines[-1] = json.dumps(row) + "\n"
    open(os.path.join(bad, runner.HISTORY), "w").writelines(lines)
    fake.calls.clear()
    with pytest.raises(HistoryError, match=r"network 1 .* non-finite value nan"):
        runner.search(config2, bad, allow_config_change=True)
    assert fake.calls == []


def test_a_budget_the_space_cannot_apply_stops_before_anything_trains(
    tmp_path, fake_fmnist_dir, monkeypatch
):
    fake = _FakeTraining(monkeypatch)
    monkeypatch.setattr(GraphSpace, "FIDELITIES", frozenset({"epochs", "num_steps", "resolution"}))
    overrides = {"hyperband.budget_resource": "data_fraction", "hyperband.max_budget": 1.0}
    config = _bohb(fake_fmnist_dir, **{"hyperband.min_budget": 0.5, **overrides})
    with pytest.raises(FidelityError, match=r"cannot apply the fidelity \['data_fraction'\]"):
        runner.search(config, str(tmp_path / "w"))
    assert fake.calls == [] and not os.path.exists(tmp_path / "w" / runner.HISTORY)


class _NaNAll:
    """Every text is "in" it: every curve gets a NaN."""

    def __contains__(self, text):
        return True


@pytest.mark.slow
def test_bohb_sigkilled_in_the_middle_of_a_bracket_resumes(
    repo_root, run_script, tmp_path, fake_fmnist_dir
):
    """morphism_bohb_tiny with real training, SIGKILLed right after network 2 (the second of
    bracket s=1's first rung, at 1 epoch) was checkpointed and before its history row; the
    rerun takes the row from the checkpoint, promotes, and ends with the history, metrics
    and summary of an uninterrupted run."""
    from tests.runner.resume_test import _jsonl, _kill_and_resume

    overrides = {"data.data_dir": fake_fmnist_dir, "search.num_devices": 1}

    def killed_in_rung_0(workdir):
        assert [(r["round"], r["budget"]) for r in _rows(workdir)[1]] == [(0, 2.0), (1, 1.0)]

    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "search", "morphism_bohb_tiny", 3, overrides,
        killed_in_rung_0,
    )  # fmt: skip
    assert _untimed(_rows(workdir)[1]) == _untimed(_rows(ref)[1])
    assert [r["budget"] for r in _rows(ref)[1]] == [2.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]
    assert strip(_jsonl(workdir, "metrics.jsonl")) == strip(_jsonl(ref, "metrics.jsonl"))
    with open(os.path.join(ref, "summary.json")) as f:
        expected = json.load(f)
    drop = ("search_wall_s", "train_s_total")
    assert {k: v for k, v in summary.items() if k not in drop} == {
        k: v for k, v in expected.items() if k not in drop
    }
