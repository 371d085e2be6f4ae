"""The quickstart config end to end at tiny size: search, hand-over of the genotype, retraining."""

import json
import os

import pytest

from experiments.configs import darts_fashion_mnist
from jnas.runner import search as search_lib

# The search as experiments/configs/darts_tiny.py (the same compiled step as the runner
# tests: a persistent-cache hit), the retraining as eval_tiny.py.
TINY = {
    "data.limit": 256,
    "model.C": 4,
    "model.layers": 3,
    "search.batch_size": 16,
    "eval_batch_size": 64,
    "progress": False,
    "retrain.data.limit": 128,
    "retrain.model.C": 4,
    "retrain.model.layers": 3,
    "retrain.train.batch_size": 16,
    "retrain.train.max_steps_per_epoch": 4,
    "retrain.train.eval_batch_size": 32,
    "retrain.data.test_limit": 64,
    "retrain.progress": False,
    "retrain.checkpoint_every_steps": 2,
}


def _config(data_dir, **overrides):
    config = darts_fashion_mnist.get_config()
    config.data.data_dir = data_dir
    config.retrain.data.data_dir = data_dir
    for k, v in {**TINY, **overrides}.items():
        node = config
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return config


@pytest.mark.slow  # about 2 min cold: compiles a supernet and an evaluation network
def test_search_then_retrain_the_found_cell(tmp_path, fake_fmnist_dir):
    workdir = str(tmp_path / "qs")
    # The retraining is cut short (as a kill would): the rerun finishes it, not the search.
    first = search_lib.search(
        _config(fake_fmnist_dir, **{"retrain.train.stop_after_steps": 2}), workdir
    )
    assert first["retrain"]["steps"] == 2 and "test_acc" not in first["retrain"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        search_rows = f.read()

    summary = search_lib.search(_config(fake_fmnist_dir), workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert f.read() == search_rows  # the finished search did not run again
    retrain = summary["retrain"]
    epochs = darts_fashion_mnist.get_config().retrain.train.epochs
    assert retrain["steps"] == 4 * epochs  # max_steps_per_epoch x the config's epochs
    assert 0.0 <= retrain["test_acc"] <= 1.0
    # The retrained network is the searched cell.
    with open(os.path.join(workdir, "genotype.txt")) as f:
        found = f.read().strip()
    assert found == summary["genotype"]
    with open(os.path.join(workdir, "retrain", "results.json")) as f:
        assert json.load(f)["genotype"] == found
    assert retrain["params"] > 0
