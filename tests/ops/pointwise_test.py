"""Tests for jnas.ops.pointwise: the native 1x1-conv weight gradient against float64 references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops import native, pointwise
from jnas.ops.layers import Conv2d

pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"native kernels unavailable: {native.build_error()}"
)


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# Channel counts around the vector width (8 or 16 lanes), the panel width (5 vectors) and the
# register tile's rows (4-12), and the DARTS network's shapes; rows below and above one block;
# vectors (8 lanes by default here; 16 in test_forced_vector_width) along dy's channels, whole
# (288x72) or with a partial last vector (36x36, 25x97), and along x's (swapped: 144x36, 7x3,
# 13x17); several panels (40x200, 288x72).
@pytest.mark.parametrize(
    "lead,ci,co",
    [
        ((2, 3, 3), 1, 1),
        ((5,), 7, 3),
        ((4, 4, 4), 36, 36),
        ((2, 8, 8), 36, 18),
        ((3, 5, 5), 13, 17),
        ((2, 4, 4), 12, 96),
        ((1, 6, 6), 25, 97),
        ((2, 3, 3), 144, 144),
        ((2, 3, 3), 144, 36),
        ((3, 3, 3), 17, 36),
        ((700,), 9, 16),
        ((3,), 40, 200),
        ((2, 4, 4), 288, 72),
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_wgrad_kernel_matches_float64(lead, ci, co, relu):
    x, dy = _rand((*lead, ci), 0), _rand((*lead, co), 1)
    xr = np.maximum(x, 0) if relu else x
    want = np.einsum("mi,mo->io", xr.reshape(-1, ci).astype(np.float64), dy.reshape(-1, co))
    got = np.asarray(jax.jit(lambda a, b: native.pw_wgrad(a, b, relu))(x, dy))
    assert got.shape == (ci, co)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())


def test_wgrad_kernel_vmap_is_one_grouped_call():
    x, dy = _rand((3, 2, 4, 4, 10), 2), _rand((3, 2, 4, 4, 20), 3)
    f = jax.vmap(lambda a, b: native.pw_wgrad(a, b))
    assert str(jax.make_jaxpr(f)(x, dy)).count("jnas_pw_wgrad") == 1
    want = np.einsum("gbhwi,gbhwo->gio", x.astype(np.float64), dy)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x, dy)), want, rtol=1e-5, atol=1e-4)
    # Nested vmap, and an unbatched x against a batched dy.
    g = jax.vmap(jax.vmap(lambda a, b: native.pw_wgrad(a, b)))
    want2 = np.einsum("gbhwi,gbhwo->gbio", x.astype(np.float64), dy)
    np.testing.assert_allclose(np.asarray(jax.jit(g)(x, dy)), want2, rtol=1e-5, atol=1e-4)
    h = jax.vmap(lambda a, b: native.pw_wgrad(a, b), in_axes=(None, 0))
    want3 = np.einsum("bhwi,gbhwo->gio", x[0].astype(np.float64), dy)
    np.testing.assert_allclose(np.asarray(jax.jit(h)(x[0], dy)), want3, rtol=1e-5, atol=1e-4)


def test_pointwise_conv_gradients_match_plain_matmul():
    x, w, t = _rand((4, 5, 5, 24), 4), _rand((24, 40), 5), _rand((4, 5, 5, 40), 6)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)) * t)

    native_f = pointwise.pointwise_conv
    assert pointwise.native_applies(jnp.asarray(x), jnp.asarray(w))
    assert "jnas_pw_wgrad" in str(jax.make_jaxpr(jax.grad(loss(native_f), (0, 1)))(x, w))
    got = jax.jit(jax.grad(loss(native_f), (0, 1)))(x, w)
    want = jax.jit(jax.grad(loss(lambda a, b: a @ b), (0, 1)))(x, w)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-4)


def test_pointwise_conv_second_order_matches_finite_differences():
    # DARTS's second-order step differentiates the weight gradient again (Hessian-vector).
    x, w = _rand((2, 3, 3, 5), 7).astype(np.float64), _rand((5, 4), 8).astype(np.float64)
    x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)

    def inner(x, w):  # ||dL/dw||^2 for L = sum(tanh(x w))
        gw = jax.grad(lambda w: jnp.sum(jnp.tanh(pointwise.pointwise_conv(x, w))))(w)
        return jnp.sum(gw**2)

    gx = np.asarray(jax.jit(jax.grad(inner))(x32, w32), np.float64)

    def inner64(x):
        h = np.tanh(x @ w)
        gw = x.reshape(-1, x.shape[-1]).T @ (1 - h**2).reshape(-1, h.shape[-1])
        return np.sum(gw**2)

    eps = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        fd[idx] = (inner64(x + d) - inner64(x - d)) / (2 * eps)
    np.testing.assert_allclose(gx, fd, rtol=2e-3, atol=2e-3 * np.abs(fd).max())


def test_conv2d_1x1_uses_the_kernel_and_strides():
    x = _rand((2, 6, 6, 8), 9)
    conv = Conv2d(5, (1, 1), (2, 2))
    v = conv.init(jax.random.PRNGKey(0), x)
    k = np.asarray(v["params"]["kernel"])[0, 0]
    y = conv.apply(v, x)
    np.testing.assert_allclose(np.asarray(y), x[:, ::2, ::2] @ k, rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda v: jnp.sum(conv.apply(v, x) ** 2))(v)["params"]["kernel"][0, 0]
    want = np.einsum("bhwi,bhwo->io", x[:, ::2, ::2], 2 * (x[:, ::2, ::2] @ k))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-4)


def test_switch_off_and_bad_shapes(monkeypatch):
    x, w = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
    monkeypatch.setenv("JNAS_NATIVE_PW", "0")
    assert not pointwise.native_applies(x, w)
    assert "jnas_pw_wgrad" not in str(
        jax.make_jaxpr(jax.grad(lambda w: pointwise.pointwise_conv(x, w).sum()))(w)
    )
    with pytest.raises(ValueError, match="do not match"):
        pointwise.pointwise_conv(x, jnp.ones((3, 5)))


@pytest.mark.parametrize("lanes", ["8", "16"])
def test_forced_vector_width(run_script, lanes):
    # JNAS_PW_LANES forces a width (read once per process); 16 falls back to 8 without AVX-512.
    assert run_script("pointwise_lanes.py", env={"JNAS_PW_LANES": lanes}) < 1e-5
