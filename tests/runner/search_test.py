"""End to end: the tiny DARTS config through the runner, bad input (kill and resume:
tests/runner/resume_test.py)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import darts_tiny
from jnas.config import with_overrides
from jnas.errors import WorkdirConfigError
from jnas.ops import settings
from jnas.runner import search as search_lib
from jnas.runner.checkpoint import IncompatibleCheckpointError
from jnas.runner.errors import NonFiniteLossError
from jnas.spaces.genotype import Genotype


def _config(data_dir, **overrides):
    config = darts_tiny.get_config()
    config.data.data_dir = data_dir
    return with_overrides(config, overrides)


def _cli(repo, workdir, data_dir, *extra):
    return [
        sys.executable,
        "-m",
        "experiments.search",
        "--config=experiments/configs/darts_tiny.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    """The run's workdir and summary; also the compiler options of its steps, in
    ``summary["compiled_with"]`` (a recording ``Parallel``)."""
    seen = []

    class Recording(search_lib.Parallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.xla_options)

    workdir = str(tmp_path_factory.mktemp("search"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search_lib, "Parallel", Recording)
        summary = search_lib.search(_config(fake_fmnist_dir), workdir)
    return workdir, dict(summary, compiled_with=seen)


def test_steps_compile_with_the_search_options(finished_run):
    _, summary = finished_run
    with settings.use(None) as resolved:
        assert summary["compiled_with"] == [resolved.search_xla_options]


def test_workdir_layout_and_metrics(finished_run):
    workdir, summary = finished_run
    for name in ("config.json", "metrics.jsonl", "genotypes.jsonl", "genotype.txt", "alpha.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tb"))  # TensorBoard events
    genotype = Genotype.parse(open(os.path.join(workdir, "genotype.txt")).read())
    assert str(genotype) == summary["genotype"]
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_eval_acc"):
            assert math.isfinite(r[key])
    weights = [r for r in records if r["kind"] == "op_weights"]
    w = np.asarray(weights[-1]["normal"])
    assert w.shape == (5, 4)  # darts_tiny: 2-node cells (5 edges), 4 ops
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)  # softmax per edge
    per_epoch = [json.loads(x) for x in open(os.path.join(workdir, "genotypes.jsonl"))]
    assert [g["epoch"] for g in per_epoch] == [1, 2]
    assert per_epoch[-1]["genotype"] == summary["genotype"]


def test_alpha_moves_and_loss_is_finite(finished_run):
    workdir, _ = finished_run
    alpha = json.load(open(os.path.join(workdir, "alpha.json")))
    w = np.asarray(alpha["normal"])
    assert np.ptp(w) > 1e-4  # not the uniform initial 1/8 any more


def test_incompatible_checkpoint_is_reported_and_kept(tmp_path, fake_fmnist_dir, finished_run):
    ref_dir, _ = finished_run
    import shutil

    workdir = str(tmp_path / "copy")
    shutil.copytree(ref_dir, workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    config = _config(fake_fmnist_dir, **{"model.C": 6})
    with pytest.raises(WorkdirConfigError, match=r"model.C: 4 -> 6"):  # config.json's check
        search_lib.search(config, workdir)
    # Past it (allowed), the checkpoint's own check refuses the other network.
    with pytest.raises(IncompatibleCheckpointError, match="does not fit this run"):
        search_lib.search(config, workdir, allow_config_change=True)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


@pytest.mark.slow
def test_nan_loss_stops_without_overwriting(tmp_path, fake_fmnist_dir, monkeypatch):
    original = search_lib._Steps.run

    def poisoned(self, state, step, train, val):
        state, m = original(self, state, step, train, val)
        if step == 4:
            m = dict(m, train_loss=m["train_loss"] * float("nan"))
        return state, m

    monkeypatch.setattr(search_lib._Steps, "run", poisoned)
    workdir = str(tmp_path / "nan")
    with pytest.raises(NonFiniteLossError, match="train_loss is nan at step 4"):
        search_lib.search(_config(fake_fmnist_dir), workdir)
    steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert steps and max(steps) <= 4


def test_missing_dataset_is_named(tmp_path, repo_root):
    cmd = _cli(repo_root, str(tmp_path / "w"), str(tmp_path / "empty"), "--config.data.name=svhn")
    out = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "DatasetNotFoundError" in out.stderr and "svhn" in out.stderr
