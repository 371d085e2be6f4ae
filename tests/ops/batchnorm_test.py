"""Tests for jnas.ops.batchnorm: the native batch norm against flax.linen.BatchNorm."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops import batchnorm, native
from jnas.ops.layers import batch_norm

pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"native kernels unavailable: {native.build_error()}"
)


def _modules(affine: bool):
    kw = dict(momentum=0.9, epsilon=1e-5, use_scale=affine, use_bias=affine)
    return nn.BatchNorm(**kw), batchnorm.BatchNorm(**kw)


def _variables(module, x, affine: bool):
    v = module.init(jax.random.PRNGKey(0), x, use_running_average=False)
    if affine:  # non-trivial scale and bias
        c = x.shape[-1]
        v = dict(v, params={"scale": jnp.linspace(-1.5, 2.0, c), "bias": jnp.arange(c) / c})
    return v


def _loss(module, v, x, target):
    y, upd = module.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * target), upd


def _close(a, b, rtol=1e-5, atol=2e-5):
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=rtol, atol=atol)


@pytest.fixture
def data():
    kx, kt = jax.random.split(jax.random.PRNGKey(1))
    x = 3.0 * jax.random.normal(kx, (8, 6, 5, 7)) + 1.5
    return x, jax.random.normal(kt, x.shape)


def test_native_is_used_on_cpu(data):
    x, _ = data
    assert batchnorm.native_applies(x)
    _, new = _modules(True)
    v = new.init(jax.random.PRNGKey(0), x, use_running_average=False)
    fwd = lambda x: new.apply(v, x, use_running_average=False, mutable=["batch_stats"])  # noqa: E731
    jaxpr = str(jax.make_jaxpr(fwd)(x))
    # Forward: the statistics kernel; the affine map is left to XLA, which fuses it into the
    # consumers. Backward: the two backward kernels.
    assert "jnas_bn_stats" in jaxpr and "jnas_bn_affine" not in jaxpr
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(jnp.sin(fwd(x)[0]))))(x))
    assert "jnas_bn_dsums" in jaxpr and "jnas_bn_affine2" in jaxpr


@pytest.mark.parametrize("affine", [True, False])
def test_matches_flax_forward_backward_and_running_stats(data, affine):
    x, t = data
    ref, new = _modules(affine)
    v = _variables(ref, x, affine)
    assert jax.tree.structure(v) == jax.tree.structure(_variables(new, x, affine))
    (l1, u1), g1 = jax.value_and_grad(
        lambda v, x: _loss(ref, v, x, t), argnums=(0, 1), has_aux=True
    )(v, x)
    (l2, u2), g2 = jax.value_and_grad(
        lambda v, x: _loss(new, v, x, t), argnums=(0, 1), has_aux=True
    )(v, x)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    _close(u1, u2)  # running mean and (biased) variance, momentum 0.9
    _close(g1, g2, atol=5e-5)  # d/dscale, d/dbias, d/dx
    # Eval mode uses the running statistics.
    params = {"params": v["params"]} if affine else {}
    e1 = ref.apply(dict(u1, **params), x, use_running_average=True)
    e2 = new.apply(dict(u2, **params), x, use_running_average=True)
    _close(e1, e2)


@pytest.mark.parametrize("affine", [True, False])
def test_second_order_matches_flax(data, affine):
    """DARTS's second-order step differentiates through a gradient."""
    x, t = data
    ref, new = _modules(affine)
    v = _variables(ref, x, affine)

    def grad_norm(module):
        return lambda x: jnp.sum(jax.grad(lambda x: _loss(module, v, x, t)[0])(x) ** 2)

    _close(jax.grad(grad_norm(ref))(x), jax.grad(grad_norm(new))(x), atol=1e-4)


def test_gradient_matches_finite_differences(data):
    x, t = data
    _, new = _modules(True)
    v = _variables(new, x, True)
    f = lambda x: _loss(new, v, x, t)[0]  # noqa: E731
    g = jax.grad(f)(x)
    d = jax.random.normal(jax.random.PRNGKey(5), x.shape)
    eps = 1e-2
    x64 = np.asarray(x, np.float64)
    fd = (float(f(jnp.asarray(x64 + eps * d))) - float(f(jnp.asarray(x64 - eps * d)))) / (2 * eps)
    assert float(jnp.vdot(g, d)) == pytest.approx(fd, rel=2e-2)


def test_vmap_is_per_instance(data):
    x, t = data
    ref, new = _modules(True)
    v = _variables(ref, x, True)
    xs = jnp.stack([x, 2 * x + 1, -x])

    def f(module):
        return jax.vmap(lambda x: _loss(module, v, x, t)[0])

    _close(f(ref)(xs), f(new)(xs), rtol=1e-5, atol=1e-4)
    _close(
        jax.grad(lambda xs: f(ref)(xs).sum())(xs),
        jax.grad(lambda xs: f(new)(xs).sum())(xs),
        atol=5e-5,
    )
    # vmapped parameters too (one scale per instance): one kernel call over all groups.
    scales = jnp.stack([v["params"]["scale"] * k for k in (1.0, -2.0, 0.5)])

    def g(module):
        return jax.vmap(
            lambda s, x: _loss(module, dict(v, params=dict(v["params"], scale=s)), x, t)[0]
        )

    _close(g(ref)(scales, xs), g(new)(scales, xs), rtol=1e-5, atol=1e-4)


def test_statistics_are_accurate_for_large_means():
    """E x^2 - (E x)^2 in float32 loses the variance when |mean| >> std; the kernels sum in
    double, so they keep it (to float32 rounding of the returned means)."""
    rng = np.random.default_rng(0)
    x = (100.0 + rng.standard_normal((64, 16, 16, 3))).astype(np.float32)
    m, m2 = native.bn_stats(jnp.asarray(x))
    ref = x.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(m, ref.mean(0), rtol=1e-6)
    np.testing.assert_allclose(m2, (ref**2).mean(0), rtol=1e-6)
    u = rng.standard_normal(x.shape).astype(np.float32)
    mu, mux = native.bn_dsums(jnp.asarray(u), jnp.asarray(x))
    np.testing.assert_allclose(mu, u.reshape(-1, 3).mean(0), atol=1e-6)
    np.testing.assert_allclose(mux, (u.reshape(-1, 3) * ref).mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(7, 13, 11, 36), (3, 5, 7, 36), (2, 9, 9, 3), (4, 6, 6, 144)])
def test_kernels_match_float64(shape):
    """The four kernels against float64 numpy, on shapes whose rows do not fill the kernels'
    tiles (a tail), split into several chunks or not, over vmapped groups with per-group and
    shared per-channel operands."""
    if not native.available():
        pytest.skip(f"native kernels unavailable: {native.build_error()}")
    rng = np.random.default_rng(sum(shape))
    g, c = 3, shape[-1]
    u, x = (rng.standard_normal((g, *shape)).astype(np.float32) for _ in range(2))
    p, q = (rng.standard_normal((g, c)).astype(np.float32) for _ in range(2))
    r = rng.standard_normal(c).astype(np.float32)
    f64 = lambda a: a.astype(np.float64).reshape(g, -1, c)  # noqa: E731
    stats = jax.vmap(native.bn_stats)(jnp.asarray(x))
    dsums = jax.vmap(native.bn_dsums)(jnp.asarray(u), jnp.asarray(x))
    aff = jax.vmap(native.bn_affine, (0, 0, None))(jnp.asarray(x), p, r)
    aff2 = jax.vmap(native.bn_affine2, (0, 0, 0, 0, None))(jnp.asarray(u), x, p, q, r)
    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(stats[0], f64(x).mean(1), **tol)
    np.testing.assert_allclose(stats[1], (f64(x) ** 2).mean(1), **tol)
    np.testing.assert_allclose(dsums[0], f64(u).mean(1), **tol)
    np.testing.assert_allclose(dsums[1], (f64(u) * f64(x)).mean(1), **tol)
    want = f64(x) * p[:, None] + r
    np.testing.assert_allclose(np.asarray(aff).reshape(g, -1, c), want, **tol)
    want = f64(u) * p[:, None] + f64(x) * q[:, None] + r
    np.testing.assert_allclose(np.asarray(aff2).reshape(g, -1, c), want, **tol)


def test_fallback_is_flax(monkeypatch, data):
    x, _ = data
    monkeypatch.setenv("JNAS_NATIVE_BN", "0")
    bn = batch_norm(True, None)
    v = bn.init(jax.random.PRNGKey(0), x, use_running_average=False)
    jaxpr = str(
        jax.make_jaxpr(
            lambda x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
        )(x)
    )
    assert "ffi_call" not in jaxpr
    # Other dtypes take Flax's path too.
    monkeypatch.delenv("JNAS_NATIVE_BN")
    assert not batchnorm.native_applies(x.astype(jnp.bfloat16))


def test_pmap_statistics_and_gradients_equal_one_device(run_script):
    """Under pmap the batch statistics (and their gradient terms) are averaged over devices:
    8 devices x 2 images give the single-device result on all 16."""
    out = run_script("batchnorm_pmap.py", devices=8)
    assert out.pop("devices") == 8
    for key, err in out.items():
        assert err < 1e-4, (key, err)
