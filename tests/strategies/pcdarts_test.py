"""PC-DARTS: exact reduction to DARTS (K=1, no edge normalization), edge normalization and
its genotype, the warm-up, bad input, and a CPU search resumed from a checkpoint."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from search_helpers import (
    NUM_EDGES,
    SMALL_OPS,
    assert_same_results,
    resume_snapshot,
    search_with_snapshot,
    tiny_config,
)

from jnas.runner import search as search_lib
from jnas.strategies import darts, pcdarts
from jnas.strategies.warmup import WarmupSearch

# ---------------------------------------------------------------- DARTS as a special case


def _rename(tree, old, new):
    if isinstance(tree, dict):
        return {k.replace(old, new): _rename(v, old, new) for k, v in tree.items()}
    return tree


@pytest.mark.slow  # two supernets compiled (26 s cold)
def test_k1_without_edge_normalization_is_exactly_darts():
    # One reduction cell (its edges from the cell inputs stride, the others do not): the
    # edges' computation at a third of the compile time of a 3-cell network.
    config = tiny_config("darts_tiny", "/nonexistent", {"model.layers": 1})
    config.pcdarts = {"k": 1, "edge_norm": False}
    ref = darts.build(config, num_classes=10, steps_per_epoch=4)
    got = pcdarts.build(config, num_classes=10, steps_per_epoch=4)

    x = jax.random.normal(jax.random.PRNGKey(0), (8, 8, 8, 1))
    labels = jnp.arange(8) % 10
    train = {"image": x, "label": labels}
    val = {"image": x[::-1] * 0.5, "label": labels[::-1]}
    s_ref = ref.init(jax.random.PRNGKey(1), x[:2])  # eager: cheaper than compiling init
    params = _rename(s_ref.params, "MixedOp_0", "PartialChannelMixedOp_0")
    alpha = {"ops": s_ref.alpha}
    s_got = s_ref.replace(
        params=params,
        batch_stats=_rename(s_ref.batch_stats, "MixedOp_0", "PartialChannelMixedOp_0"),
        alpha=alpha,
        w_opt_state=got.w_tx.init(params),
        a_opt_state=got.a_tx.init(alpha),
    )
    got_params = jax.eval_shape(got.init, jax.random.PRNGKey(1), x[:2]).params
    assert jax.tree.structure(got_params) == jax.tree.structure(params)

    (n_ref, m_ref), (n_got, m_got) = (
        jax.jit(s.step)(st, train, val) for s, st in ((ref, s_ref), (got, s_got))
    )
    for k in m_ref:
        np.testing.assert_allclose(m_got[k], m_ref[k], rtol=1e-5, err_msg=k)
    assert float(jnp.abs(n_ref.alpha["reduce"] - s_ref.alpha["reduce"]).max()) > 0
    np.testing.assert_allclose(n_got.alpha["ops"]["normal"], n_ref.alpha["normal"], rtol=1e-5)
    np.testing.assert_allclose(n_got.alpha["ops"]["reduce"], n_ref.alpha["reduce"], rtol=1e-5)
    ref_leaves = jax.tree.leaves(_rename(n_ref.params, "MixedOp_0", "PartialChannelMixedOp_0"))
    for a, b in zip(jax.tree.leaves(n_got.params), ref_leaves):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- edge normalization


def test_edge_weights_are_a_softmax_per_node():
    beta = jax.random.normal(jax.random.PRNGKey(0), (14,))
    w = np.asarray(pcdarts.edge_weights(beta, 4))
    starts = [0, 2, 5, 9, 14]
    for j in range(4):
        seg = slice(starts[j], starts[j + 1])
        np.testing.assert_allclose(w[seg].sum(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(w[seg], jax.nn.softmax(beta[seg]), rtol=1e-6)


def _searcher(**overrides):
    config = tiny_config("pcdarts_fashion_mnist", "/nonexistent", overrides)
    return pcdarts.build(config, num_classes=10, steps_per_epoch=4)


def test_genotype_uses_alpha_and_beta_together():
    searcher = _searcher(**{"model.n_nodes": 4, "model.multiplier": 4})  # 14 edges
    alpha = jax.device_get(searcher.init_alpha(jax.random.PRNGKey(0)))
    assert alpha["ops"]["normal"].shape == (14, 4) and alpha["edges"]["normal"].shape == (14,)
    ops = {t: np.zeros((14, 4)) for t in ("normal", "reduce")}
    # Node 1 (edges 2, 3, 4): by alpha alone edges 2 and 3 win (sep_conv, k=3) ...
    ops["normal"][2, 3] = ops["normal"][3, 3] = 2.0
    ops["normal"][4, 1] = 1.0
    beta = {t: np.zeros(14) for t in ("normal", "reduce")}
    beta["normal"][2] = -4.0  # ... but edge normalization turns edge 2 down.
    alpha = {"ops": ops, "edges": beta}
    node1 = searcher.derive_fn(alpha).normal[2:4]
    assert sorted(i for _, i in node1) == [1, 2]  # edges 3 and 4: inputs 1 and 2
    without = searcher.derive_fn({"ops": ops})
    assert sorted(i for _, i in without.normal[2:4]) == [0, 1]
    weights = searcher.op_weights_fn(alpha)
    assert set(weights) == {"normal", "reduce", "normal_edges", "reduce_edges"}


def test_warmup_skips_the_architecture_step():
    searcher = _searcher(**{"search.arch_start_epoch": 1})
    assert isinstance(searcher, WarmupSearch) and searcher.arch_start_step == 4
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 8, 8, 1))
    batch = {"image": x, "label": jnp.arange(8) % 10}
    state = jax.eval_shape(searcher.init, jax.random.PRNGKey(1), x[:2])
    jaxpr = str(jax.make_jaxpr(searcher.step)(state, batch, batch))
    assert "cond[" in jaxpr


# ---------------------------------------------------------------- bad input


def test_k_must_divide_the_channels(tmp_path, fake_fmnist_dir):
    with pytest.raises(ValueError, match=r"pcdarts.k=3 must divide the channel count model.C=4"):
        _searcher(**{"pcdarts.k": 3})
    config = tiny_config("pcdarts_fashion_mnist", fake_fmnist_dir, {"pcdarts.k": 8})
    with pytest.raises(ValueError, match="must divide"):
        search_lib.search(config, str(tmp_path))


# ---------------------------------------------------------------- end to end

WARMUP = {"search.arch_start_epoch": 1}  # epoch 1 trains weights only, epoch 2 also alpha
SNAPSHOT_STEP = 3  # in the warm-up: the resumed run crosses into the architecture updates


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("pcdarts"))
    snapshot = str(tmp_path_factory.mktemp("pcdarts_snapshot") / "w")
    config = tiny_config("pcdarts_fashion_mnist", fake_fmnist_dir, WARMUP)
    summary = search_with_snapshot(config, workdir, snapshot, at_step=SNAPSHOT_STEP)
    return workdir, summary, snapshot


def test_search_writes_alpha_and_edge_weights(finished_run):
    import json

    workdir, summary, _ = finished_run
    assert summary["steps"] == 8
    weights = json.load(open(os.path.join(workdir, "alpha.json")))
    assert np.asarray(weights["normal"]).shape == (NUM_EDGES, len(SMALL_OPS))
    np.testing.assert_allclose(np.sum(weights["normal_edges"][:2]), 1.0, rtol=1e-4)
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[0]["grad_norm_alpha"] == 0.0 and epochs[1]["grad_norm_alpha"] > 0


@pytest.mark.slow  # the host loop's resume is tested bit for bit by tests/runner/resume_test.py
def test_resume_after_a_kill_matches_uninterrupted(finished_run, fake_fmnist_dir, capsys):
    ref_dir, _, snapshot = finished_run
    config = tiny_config("pcdarts_fashion_mnist", fake_fmnist_dir, WARMUP)
    assert resume_snapshot(config, snapshot, capsys) == SNAPSHOT_STEP
    assert_same_results(snapshot, ref_dir)


# ---------------------------------------------------------------- fused / two-phase / pmap


@pytest.mark.slow
def test_fused_two_phase_and_pmap_steps_agree_through_the_warmup(run_script):
    out = run_script("steps_pmap.py", "pcdarts", devices=8, timeout=900)
    assert out == {"method": "pcdarts", "steps": 2}


@pytest.mark.parametrize("seed", range(8))
def test_genotype_matches_the_rule_in_exact_arithmetic(seed):
    """softmax(alpha) * softmax(beta) computed with 400 digits (mpmath), one op per edge ahead
    by 80 to 800 and beta spread by up to 100, compared by their logarithms rounded to
    float64 (weights float64 cannot tell apart tie): the official rule's cell."""
    import mpmath

    mpmath.mp.dps = 400
    searcher = _searcher(**{"model.n_nodes": 4, "model.multiplier": 4})
    rng = np.random.default_rng(seed)
    ops = {t: rng.normal(size=(14, 4)) for t in ("normal", "reduce")}
    for t in ops:
        ops[t][np.arange(14), rng.integers(0, 4, 14)] += rng.uniform(80, 800, 14)
    beta = {t: rng.normal(size=14) * rng.choice([1.0, 100.0]) for t in ("normal", "reduce")}
    genotype = searcher.derive_fn({"ops": ops, "edges": beta})

    def softmax(row):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        return [x / mpmath.fsum(e) for x in e]

    for t in ("normal", "reduce"):
        expected, start = [], 0
        for j in range(4):
            n_in = j + 2
            b = softmax(beta[t][start : start + n_in])
            w = [
                [float(mpmath.log(x * b[i])) for x in softmax(ops[t][start + i])]
                for i in range(n_in)
            ]
            valid = [k for k, o in enumerate(SMALL_OPS) if o != "none"]
            top = {i: max(valid, key=lambda k, i=i: (w[i][k], -k)) for i in range(n_in)}
            for i in sorted(range(n_in), key=lambda i: -w[i][top[i]])[:2]:
                expected.append((SMALL_OPS[top[i]], i))
            start += n_in
        assert getattr(genotype, t) == tuple(expected), t
