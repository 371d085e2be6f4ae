"""GDAS: the Gumbel sampler and straight-through gradient against references, the schedule,
GDAS-FRC, bad input, and a CPU search resumed from a checkpoint."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from search_helpers import (
    SMALL_OPS,
    assert_same_results,
    resume_snapshot,
    search_with_snapshot,
    tiny_config,
)

from jnas.runner import search as search_lib
from jnas.spaces import edges
from jnas.strategies import gdas, gumbel
from jnas.strategies.oneshot import gradient_strategy

# ---------------------------------------------------------------- the sampler


@pytest.mark.parametrize("tau", [0.1, 10.0])
def test_gumbel_frequencies_match_softmax(tau):
    alpha = jnp.asarray([[1.0, 0.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0, -3.0]])
    n = 40_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    sample = jax.jit(jax.vmap(lambda k: gumbel.gumbel_softmax_st(k, alpha, tau)[1]))
    index = np.asarray(sample(keys))  # [n, 2]
    p = np.asarray(jax.nn.softmax(alpha, -1))
    for row in range(2):
        freq = np.bincount(index[:, row], minlength=5) / n
        sigma = np.sqrt(p[row] * (1 - p[row]) / n)
        assert np.all(np.abs(freq - p[row]) < 4.5 * sigma + 1e-4), (freq, p[row])


def test_hard_sample_is_one_hot_and_straight_through_gradient_is_the_soft_gradient():
    key = jax.random.PRNGKey(3)
    alpha = jax.random.normal(jax.random.PRNGKey(1), (14, 8))
    tau = 0.7
    hard, index = gumbel.gumbel_softmax_st(key, alpha, tau)
    np.testing.assert_allclose(hard, jax.nn.one_hot(index, 8), atol=1e-6)
    assert np.all(np.asarray(hard)[np.asarray(jax.nn.one_hot(index, 8)) == 0] == 0)

    def soft(a):  # the relaxation with the same Gumbel draw (Eq. 5)
        g = jax.random.gumbel(key, a.shape)
        return jax.nn.softmax((jax.nn.log_softmax(a) + g) / tau)

    # A loss linear in the weights: the straight-through gradient IS the soft gradient.
    c = jax.random.normal(jax.random.PRNGKey(2), (14, 8))
    g_st = jax.grad(lambda a: jnp.sum(gumbel.gumbel_softmax_st(key, a, tau)[0] * c))(alpha)
    g_soft = jax.grad(lambda a: jnp.sum(soft(a) * c))(alpha)
    np.testing.assert_allclose(g_st, g_soft, rtol=1e-5, atol=1e-7)

    # A nonlinear loss: forward at the hard sample, backward through the soft relaxation.
    m = jax.random.normal(jax.random.PRNGKey(4), (8, 3))

    def loss(h):
        return jnp.sum(jnp.tanh(h @ m) ** 2)

    g_st = jax.grad(lambda a: loss(gumbel.gumbel_softmax_st(key, a, tau)[0]))(alpha)
    _, vjp = jax.vjp(soft, alpha)
    (g_ref,) = vjp(jax.grad(loss)(jax.nn.one_hot(index, 8)))
    np.testing.assert_allclose(g_st, g_ref, rtol=1e-5, atol=1e-7)


def test_temperature_falls_linearly_per_epoch_from_10_to_0_1():
    tau = gumbel.linear_temperature(10.0, 0.1, epochs=5, steps_per_epoch=3)
    got = [float(tau(jnp.int32(s))) for s in range(15)]
    expected = [10.0 - 9.9 * (s // 3) / 4 for s in range(15)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[0] == 10.0 and got[-1] == np.float32(0.1)


# ---------------------------------------------------------------- build, FRC, bad input


FOUR_NODES = {"model.n_nodes": 4, "model.multiplier": 4}  # the fixed reduction cell's


def _config(data_dir="/nonexistent", **overrides):
    return tiny_config("gdas_fashion_mnist", data_dir, overrides)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"gdas.tau_min": 0.0}, "tau_min=0.0"),
        ({"gdas.tau_max": -1.0}, "tau_max=-1.0"),
        ({"search.hypergradient": "fd"}, "first"),
        ({"gdas.fixed_reduction": True, **FOUR_NODES, "model.C": 6}, "multiple of 4"),
        ({"gdas.fixed_reduction": True}, "model.n_nodes=4"),
    ],
)
def test_bad_input_is_rejected_before_compiling(overrides, match):
    with pytest.raises(ValueError, match=match):
        gdas.build(_config(**overrides), num_classes=10, steps_per_epoch=4)


def test_search_rejects_a_temperature_reaching_zero(tmp_path, fake_fmnist_dir):
    with pytest.raises(ValueError, match="temperature must stay positive"):
        search_lib.search(_config(fake_fmnist_dir, **{"gdas.tau_min": -0.5}), str(tmp_path))
    ckpts = tmp_path / "checkpoints"
    assert not ckpts.exists() or not [d for d in os.listdir(ckpts) if d.isdigit()]


def test_registry_builds_gdas_without_vmapped_edges():
    searcher = gradient_strategy("gdas")(_config(), num_classes=10, steps_per_epoch=4)
    assert isinstance(searcher, gdas.GdasSearch)
    assert searcher.model.vmap_edges is False
    assert searcher.model.mixed_op is edges.SampledMixedOp


@pytest.mark.slow  # a GDAS-FRC search (8 s cold); its genotype's retraining is in the default suite
def test_frc_searches_the_normal_cell_only_and_writes_the_fixed_reduction_cell():
    config = _config(**{"gdas.fixed_reduction": True, **FOUR_NODES})
    searcher = gdas.build(config, num_classes=10, steps_per_epoch=4)
    alpha = searcher.init_alpha(jax.random.PRNGKey(0))
    assert set(alpha) == {"normal"} and alpha["normal"].shape == (14, len(SMALL_OPS))
    genotype = searcher.derive_fn(alpha)
    assert genotype.reduce == edges.FRC_REDUCE_CELL
    assert all(op in SMALL_OPS for op, _ in genotype.normal)
    arch = searcher.arch_fn(alpha, jax.random.PRNGKey(1), jnp.int32(0))
    np.testing.assert_array_equal(arch["reduce"]["hard"], np.ones((14, 1)))

    # The supernet's reduction cells hold the FRC ops and nothing else with parameters.
    x = jnp.zeros((2, 8, 8, 1))
    variables = jax.eval_shape(
        searcher.model.init, jax.random.PRNGKey(0), x, searcher.eval_arch_fn(alpha)
    )
    reduce_cell = variables["params"]["cell_1"]
    with_params = sorted(k for k in reduce_cell if not k.startswith("pre"))
    assert with_params == ["from_0_e0", "from_1_e3"]  # the two frc_conv edges

    # A whole search step traces (sampled normal cells, fixed reduction cells) and updates
    # the normal cell's alpha only.
    batch = {"image": jnp.zeros((4, 8, 8, 1)), "label": jnp.zeros((4,), jnp.int32)}
    state = jax.eval_shape(searcher.init, jax.random.PRNGKey(0), x)
    new_state, metrics = jax.eval_shape(searcher.step, state, batch, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert set(new_state.alpha) == {"normal"} and "tau" in metrics


# ---------------------------------------------------------------- end to end

SNAPSHOT_STEP = 6  # mid epoch 2 (4 steps an epoch): the temperature has changed


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("gdas"))
    snapshot = str(tmp_path_factory.mktemp("gdas_snapshot") / "w")
    config = _config(fake_fmnist_dir)
    summary = search_with_snapshot(config, workdir, snapshot, at_step=SNAPSHOT_STEP)
    return workdir, summary, snapshot


def test_search_runs_and_logs_the_temperature(finished_run):
    workdir, summary, _ = finished_run
    assert summary["steps"] == 8
    assert abs(summary["tau"] - 0.1) < 1e-5  # the last epoch runs at tau_min
    genotype = open(os.path.join(workdir, "genotype.txt")).read()
    assert genotype.startswith("Genotype(") and "frc_conv" not in genotype
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    taus = {r["step"]: r["tau"] for r in records if r["kind"] == "train_step"}
    assert taus[2] == 10.0 and abs(taus[8] - 0.1) < 1e-6
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(np.isfinite(r["val_eval_acc"]) for r in epochs)  # argmax sub-network


@pytest.mark.slow  # the host loop's resume is tested bit for bit by tests/runner/resume_test.py
def test_resume_after_a_kill_matches_uninterrupted(finished_run, fake_fmnist_dir, capsys):
    ref_dir, _, snapshot = finished_run
    assert resume_snapshot(_config(fake_fmnist_dir), snapshot, capsys) == SNAPSHOT_STEP
    assert_same_results(snapshot, ref_dir)


# ---------------------------------------------------------------- fused / two-phase / pmap


@pytest.mark.slow
def test_fused_two_phase_and_pmap_steps_agree(run_script):
    out = run_script("steps_pmap.py", "gdas", devices=8, timeout=900)
    assert out == {"method": "gdas", "steps": 1}
