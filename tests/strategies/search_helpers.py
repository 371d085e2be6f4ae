"""Shared by the GDAS, PC-DARTS and P-DARTS end-to-end tests: a CPU-sized config, the CLI
command for it, a run snapshotted as a kill would leave it, and a run killed with SIGKILL
then resumed."""

import importlib
import json
import os
import shutil

import pytest

from experiments.configs.darts_tiny import SMALL_OPS
from jnas.config import with_overrides
from jnas.runner import search as search_lib
from jnas.runner.checkpoint import Checkpointer

# A 4-op space and 2-node cells (5 edges, 2 concatenated) keep the tiny supernets quick to
# trace and compile; the 4-node, 14-edge logic is tested without a supernet.
NUM_EDGES = 5

TINY = {
    "seed": 0,
    "data.limit": 256,
    "model.C": 4,
    "model.layers": 3,
    "model.n_nodes": 2,
    "model.multiplier": 2,
    "model.primitives": SMALL_OPS,
    "search.epochs": 2,
    "search.batch_size": 16,
    "search.max_steps_per_epoch": 4,
    "eval_batch_size": 64,
    "checkpoint_every_steps": 3,
    "log_every_steps": 2,
    "progress": False,
    "retrain.enabled": False,  # the Fashion-MNIST configs retrain their cell, as the quickstart
}


def config_path(name: str) -> str:
    return f"experiments/configs/{name}.py"


def tiny_config(name: str, data_dir: str, overrides: dict):
    """``experiments/configs/<name>.py`` with ``TINY`` and ``overrides`` applied."""
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    return with_overrides(config, {"data.data_dir": data_dir, **TINY, **overrides})


def search_with_snapshot(config, workdir: str, snapshot_dir: str, *, at_step: int) -> dict:
    """Run the search uninterrupted, and copy its workdir to ``snapshot_dir`` right after
    the checkpoint of ``at_step`` is written: what a kill at that moment leaves behind
    (checkpoints and JSON lines are written synchronously).

    Returns:
      The uninterrupted run's summary.
    """
    original = Checkpointer.save

    def save(self, step, state, meta=None):
        original(self, step, state, meta)
        if step == at_step:
            shutil.copytree(workdir, snapshot_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Checkpointer, "save", save)
        summary = search_lib.search(config, workdir)
    assert os.path.isdir(snapshot_dir), f"no checkpoint was saved at step {at_step}"
    return summary


def resume_snapshot(config, snapshot_dir: str, capsys) -> int:
    """Rerun the search in the snapshot's workdir (in this process); the step it resumed at."""
    assert not os.path.exists(os.path.join(snapshot_dir, "genotype.txt"))
    capsys.readouterr()
    search_lib.search(config, snapshot_dir)
    out = capsys.readouterr().out
    assert "resuming from step" in out, out
    return int(out.split("resuming from step ")[1].split()[0])


def assert_same_results(workdir: str, ref_dir: str, *, exact_metrics: bool = True) -> None:
    """The resumed run wrote what the uninterrupted one did.

    ``exact_metrics``: every record of ``metrics.jsonl`` equal (same process, same compiled
    programs), else only their steps and kinds (another process may compile differently).
    """
    for name in ("genotype.txt", "alpha.json", "genotypes.jsonl", "stages.json"):
        a, b = os.path.join(workdir, name), os.path.join(ref_dir, name)
        assert os.path.exists(a) == os.path.exists(b), name
        if os.path.exists(b):
            with open(a) as fa, open(b) as fb:
                assert fa.read() == fb.read(), name

    def records(d):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            rows = [json.loads(x) for x in f]
        return rows if exact_metrics else [(r["step"], r["kind"]) for r in rows]

    assert records(workdir) == records(ref_dir)
