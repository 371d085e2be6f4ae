"""The edge modules of GDAS, PC-DARTS and P-DARTS against references (small shapes, no
supernet)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops.primitives import make_op
from jnas.spaces import edges
from jnas.spaces.darts import MixedOp
from jnas.spaces.genotype import Genotype

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def _x(c=4, hw=8, b=2, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (b, hw, hw, c))


# ---------------------------------------------------------------- channel shuffle


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_channel_shuffle_is_the_shufflenet_permutation(groups):
    c = 8
    x = jnp.broadcast_to(jnp.arange(c, dtype=jnp.float32), (1, 2, 2, c))
    y = np.asarray(edges.channel_shuffle(x, groups))[0, 0, 0]
    assert sorted(y.tolist()) == list(range(c))  # a permutation
    per = c // groups
    expected = [g * per + i for i in range(per) for g in range(groups)]  # torch view/transpose
    assert y.tolist() == expected
    # Shuffling is invertible by the transposed shuffle.
    back = edges.channel_shuffle(edges.channel_shuffle(x, groups), per)
    np.testing.assert_array_equal(back, x)


def test_channel_shuffle_rejects_bad_groups():
    with pytest.raises(ValueError, match="divide"):
        edges.channel_shuffle(jnp.zeros((1, 1, 1, 6)), 4)


# ---------------------------------------------------------------- GDAS sampled edge


def _sampled(stride=1):
    mod = edges.SampledMixedOp(4, stride, OPS)
    x = _x()
    arch = {"hard": jax.nn.one_hot(3, len(OPS)), "index": jnp.int32(3)}
    return mod, x, mod.init(jax.random.PRNGKey(1), x, arch)


def _apply_op(name, variables, x, stride=1):
    op = make_op(name, 4, stride, affine=False, search=True)
    key = f"ops_{name}"
    v = {c: variables[c][key] for c in ("params", "batch_stats") if key in variables.get(c, {})}
    return op.apply(v, x, True, mutable=["batch_stats"])[0]


@pytest.mark.parametrize("stride", [1, 2])
def test_sampled_edge_computes_exactly_the_sampled_op(stride):
    mod, x, variables = _sampled(stride)
    assert set(variables["params"]) == {"ops_sep_conv_3x3"} | (
        {"ops_skip_connect"} if stride == 2 else set()  # a factorized reduction at stride 2
    )
    for k, name in enumerate(OPS):
        arch = {"hard": jax.nn.one_hot(k, len(OPS)), "index": jnp.int32(k)}
        y, _ = mod.apply(variables, x, arch, mutable=["batch_stats"])
        np.testing.assert_allclose(y, _apply_op(name, variables, x, stride), rtol=1e-6, atol=1e-6)


def test_sampled_edge_switch_survives_jit_and_only_the_sampled_op_gets_gradients():
    mod, x, variables = _sampled()

    def loss(params, hard, index):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        y, _ = mod.apply(v, x, {"hard": hard, "index": index}, mutable=["batch_stats"])
        return jnp.sum(y * x)

    f = jax.jit(jax.grad(loss, argnums=(0, 1)))
    hlo = f.lower(variables["params"], jnp.eye(len(OPS))[1], jnp.int32(1)).as_text()
    assert "stablehlo.case" in hlo  # a real conditional, not a select over all ops

    # The sampled op is a pool: the conv's parameters get exactly zero gradient.
    g_params, g_hard = f(variables["params"], jnp.eye(len(OPS))[1], jnp.int32(1))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_params))
    # d/dh[index] = <g, op(x)>; d/dh[k != index] = sum(g) (the official forward_gdas).
    y_pool = _apply_op("max_pool_3x3", variables, x)
    np.testing.assert_allclose(g_hard[1], jnp.sum(x * y_pool), rtol=1e-5)
    np.testing.assert_allclose(g_hard[np.array([0, 2, 3])], jnp.full(3, jnp.sum(x)), rtol=1e-5)

    g_params, _ = f(variables["params"], jnp.eye(len(OPS))[3], jnp.int32(3))
    assert float(jnp.abs(jax.tree.leaves(g_params)[0]).max()) > 0  # the conv, when sampled


def test_fixed_reduction_cell_as_edges():
    prims = edges.fixed_cell_primitives(edges.FRC_REDUCE_CELL)
    assert len(prims) == 14 and all(len(p) == 1 for p in prims)
    used = {k: p[0] for k, p in enumerate(prims) if p[0] != "none"}
    # Edges (DARTS order): 0=(0->n0), 3=(1->n1), 5=(0->n2), 10=(1->n3).
    assert used == {
        0: "frc_conv_1x3_3x1",
        3: "frc_conv_1x3_3x1",
        5: "max_pool_3x3_bn",
        10: "max_pool_3x3_bn",
    }
    Genotype(edges.FRC_REDUCE_CELL, (2, 3, 4, 5), edges.FRC_REDUCE_CELL, (2, 3, 4, 5)).validate()


@pytest.mark.parametrize("affine", [False, True])
def test_frc_conv_matches_the_official_layer_sizes(affine):
    c = 16
    op = make_op("frc_conv_1x3_3x1", c, 2, affine=affine)
    v = op.init(jax.random.PRNGKey(0), _x(c), True)
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(v["params"]))
    convs = 2 * (c * (c // 8) * 3) + c * c  # two grouped 1x3 / 3x1 convs and a 1x1
    extra = 3 * c if not affine else 2 * 2 * c  # conv biases (search) or BN scale + bias
    assert n == convs + extra
    y = op.apply(v, _x(c), True, mutable=["batch_stats"])[0]
    assert y.shape == (2, 4, 4, c)


# ---------------------------------------------------------------- PC-DARTS partial edge


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_with_k1_is_the_darts_mixed_op(stride):
    x = _x()
    w = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(3), (len(OPS),)))
    ref = MixedOp(4, stride, OPS)
    v = ref.init(jax.random.PRNGKey(1), x, w)
    got = edges.PartialChannelMixedOp(4, stride, OPS, k=1)
    y_ref = ref.apply(v, x, w, mutable=["batch_stats"])[0]
    y = got.apply(v, x, {"ops": w}, mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_bypasses_and_shuffles(stride):
    k, c = 4, 8
    x = _x(c)
    w = jnp.full((len(OPS),), 0.25)
    mod = edges.PartialChannelMixedOp(c, stride, OPS, k=k)
    v = mod.init(jax.random.PRNGKey(1), x, {"ops": w})
    # The ops are built for C/k channels.
    kernel = v["params"]["sep_conv_3x3"]["DilConv_1"]["Conv2d_0"]["kernel"]
    assert kernel.shape[-1] == c // k
    y = mod.apply(v, x, {"ops": w}, mutable=["batch_stats"])[0]
    rest = x[..., c // k :]
    if stride == 2:
        rest = jnp.maximum(
            jnp.maximum(rest[:, ::2, ::2], rest[:, 1::2, ::2]),
            jnp.maximum(rest[:, ::2, 1::2], rest[:, 1::2, 1::2]),
        )
    # Undo the shuffle: the last (k-1)C/k channels are the bypass, unchanged.
    unshuffled = edges.channel_shuffle(y, c // k)
    np.testing.assert_allclose(unshuffled[..., c // k :], rest, rtol=1e-6)
    # Edge normalization scales the whole edge output.
    y2 = mod.apply(v, x, {"ops": w, "edge": jnp.float32(0.3)}, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(y2, 0.3 * y, rtol=1e-6)


def test_partial_channel_edge_rejects_k_not_dividing_channels():
    mod = edges.PartialChannelMixedOp(6, 1, OPS, k=4)
    with pytest.raises(ValueError, match="k=4 must divide"):
        mod.init(jax.random.PRNGKey(0), _x(6), {"ops": jnp.ones(len(OPS))})


# ---------------------------------------------------------------- P-DARTS skip dropout


def test_skip_dropout_edge():
    x = _x()
    w = jnp.asarray([0.0, 0.0, 1.0, 0.0])  # the skip connection alone
    mod = edges.SkipDropMixedOp(4, 1, OPS)
    ref = MixedOp(4, 1, OPS)
    v = ref.init(jax.random.PRNGKey(1), x, w)
    rngs = {"dropout": jax.random.PRNGKey(5)}
    y0 = mod.apply(v, x, {"ops": w, "skip_drop": 0.0}, rngs=rngs, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(y0, x)
    y = mod.apply(v, x, {"ops": w, "skip_drop": 0.5}, rngs=rngs, mutable=["batch_stats"])[0]
    kept = np.asarray(y != 0)
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(np.asarray(y)[kept], 2 * np.asarray(x)[kept], rtol=1e-6)
    y_eval = mod.apply(v, x, {"ops": w, "skip_drop": 0.5}, False)  # no dropout at evaluation
    np.testing.assert_allclose(y_eval, x)
    # Other ops are the DARTS mixed op.
    w2 = jnp.asarray([0.1, 0.3, 0.0, 0.6])
    a = mod.apply(v, x, {"ops": w2, "skip_drop": 0.5}, rngs=rngs, mutable=["batch_stats"])[0]
    b = ref.apply(v, x, w2, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)
