"""End to end: a morphism search (jnas.runner.morphism) on the tiny config: the history, the
checkpoints of trained variables, recovery of a network checkpointed but not written, a NaN
reward, config validation; kill and resume and the retraining under -m slow."""

import json
import os
import shutil

import numpy as np
import pytest

from experiments.configs import morphism_bo_tiny
from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.runner import morphism as runner
from jnas.runner import run_search
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError
from jnas.runner.discrete import NonFiniteRewardError
from jnas.spaces import child as child_lib
from jnas.spaces import morphism
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
