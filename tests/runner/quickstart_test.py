"""The quickstart config end to end at tiny size: search, hand-over of the genotype, retraining."""

import json
import os

import pytest

from experiments.configs import darts_fashion_mnist
from jnas.config import with_overrides
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
    return with_overrides(config, {**TINY, **overrides})


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


def test_retraining_is_its_own_config():
    # `--config=experiments/configs/darts_fashion_mnist.py:retrain`, as experiments.train
    # parses it: the quickstart's retraining with the reference cell, DARTS_V2.
    from absl import flags
    from ml_collections import config_flags

    path = darts_fashion_mnist.__file__
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True)
    values(["prog", f"--config={path}:retrain"])
    parsed = values.config
    embedded = darts_fashion_mnist.get_config().retrain
    assert parsed.genotype == "DARTS_V2"
    for key in ("data", "model", "optim", "train"):
        assert parsed[key].to_dict() == embedded[key].to_dict(), key
    with pytest.raises(ValueError, match="'retrain'"):
        darts_fashion_mnist.get_config("retrian")


def test_other_methods_keep_the_quickstart_budget_without_its_warm_up():
    # with_quickstart_budget hands data, network size, steps and retraining to the other
    # methods' configs; the DARTS-specific architecture schedule stays the quickstart's own.
    from experiments.configs import darts_cifar10

    quick = darts_fashion_mnist.get_config()
    other = darts_fashion_mnist.with_quickstart_budget(darts_cifar10.get_config())
    assert other.data.to_dict() == quick.data.to_dict()
    assert (other.model.C, other.model.layers) == (quick.model.C, quick.model.layers)
    assert (other.search.epochs, other.search.batch_size) == (
        quick.search.epochs,
        quick.search.batch_size,
    )
    own = darts_cifar10.get_config()
    assert other.search.arch_start_epoch == own.search.arch_start_epoch
    assert other.optim_w.to_dict() == own.optim_w.to_dict()
    assert other.retrain.to_dict() == quick.retrain.to_dict()


def test_quickstart_search_updates_the_architecture_after_its_warm_up():
    # A warm-up as long as the search would leave alpha at its random init: the derived cell
    # would be noise. The quickstart warms up, then has at least one epoch of alpha steps.
    config = darts_fashion_mnist.get_config()
    assert 0 < config.search.arch_start_epoch < config.search.epochs
