"""The worked example of a gradient strategy in one module plus one config: SNAS-style soft
Gumbel-softmax op weights (jnas/strategies/snas.py, experiments/configs/snas_fashion_mnist.py)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from search_helpers import SMALL_OPS, tiny_config

from jnas.runner import search as search_lib
from jnas.spaces.genotype import Genotype
from jnas.strategies import gumbel, snas


def test_soft_samples_argmax_is_distributed_as_softmax():
    logits = jnp.asarray([1.0, 0.0, -1.0, 2.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    soft = jax.vmap(lambda k: gumbel.gumbel_softmax(k, logits, 0.5))(keys)
    np.testing.assert_allclose(np.asarray(soft.sum(-1)), 1.0, rtol=1e-5)
    freq = np.bincount(np.asarray(soft.argmax(-1)), minlength=4) / len(keys)
    np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits)), atol=0.015)


def test_temperature_decays_per_epoch_to_its_floor():
    tau = snas.exponential_temperature(1.0, 0.5, 0.8, steps_per_epoch=10)
    got = [float(tau(jnp.int32(s))) for s in (0, 9, 10, 25, 1000)]
    np.testing.assert_allclose(got, [1.0, 1.0, 0.8, 0.64, 0.5], rtol=1e-6)


def test_snas_searches_a_tiny_net_and_derives_a_genotype(tmp_path, fake_fmnist_dir):
    config = tiny_config(
        "snas_fashion_mnist",
        fake_fmnist_dir,
        {"search.epochs": 2, "search.max_steps_per_epoch": 2, "checkpoint_every_steps": 2},
    )
    workdir = str(tmp_path / "snas")
    summary = search_lib.search(config, workdir)
    genotype = Genotype.parse(open(os.path.join(workdir, "genotype.txt")).read())
    assert str(genotype) == summary["genotype"]
    assert all(op in SMALL_OPS and op != "none" for op, _ in genotype.normal + genotype.reduce)
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    steps = [r for r in records if r["kind"] == "train_step"]
    assert steps and all(np.isfinite(r["train_loss"]) for r in steps)
    taus = [r["tau"] for r in records if r["kind"] == "epoch"]
    np.testing.assert_allclose(taus, [1.0, 0.97], rtol=1e-6)
    weights = [np.asarray(r["normal"]) for r in records if r["kind"] == "op_weights"]
    assert len(weights) == 2 and np.abs(weights[1] - weights[0]).max() > 1e-6  # alpha moves
