"""Tests for jnas.ops.depthwise: the shifted-slice and native impls against XLA's grouped conv."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops import native
from jnas.ops.depthwise import depthwise_conv2d, output_size

# (kernel, dilation, padding) of the DARTS ops: sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_5x5.
DARTS_CONVS = [(3, 1, 1), (5, 1, 2), (3, 2, 2), (5, 2, 4)]
RTOL = ATOL = 2e-5


def _inputs(seed: int, b: int, h: int, w: int, c: int, k: int):
    kx, kw = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (b, h, w, c), jnp.float32)
    wt = jax.random.normal(kw, (k, k, c), jnp.float32) / k
    return x, wt


def _conv(impl, stride, dilation, padding):
    def f(x, w):
        return depthwise_conv2d(x, w, stride=stride, dilation=dilation, padding=padding, impl=impl)

    return f


def _close(a, b, scale=1.0):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL * scale)


def _scale(a):
    return max(1.0, float(jnp.max(jnp.abs(a))))


@pytest.fixture(params=["shift", "native"])
def impl(request):
    """The CPU formulations under test; each is compared with impl='lax'."""
    if request.param == "native" and not native.available():
        pytest.skip(f"native kernels unavailable: {native.build_error()}")
    return request.param


def _both(fn, impl):
    """jit(fn) for `impl` and impl='lax' in one program (one compile per test case)."""
    return jax.jit(lambda *args: (fn(impl, *args), fn("lax", *args)))


FORWARD_CASES = list(itertools.product(DARTS_CONVS, [1, 2])) + [
    pytest.param(kdp, stride, marks=pytest.mark.slow)  # beyond the DARTS ops: -m slow
    for kdp, stride in (((3, 1, 0), 1), ((1, 1, 0), 2), ((3, 1, 3), 3), ((5, 1, 1), 2))
]


@pytest.mark.parametrize("kdp,stride", FORWARD_CASES)
def test_forward_matches_lax(kdp, stride, impl):
    k, d, p = kdp
    sizes = [(7, 8), (8, 7), (14, 14), (28, 32)] if stride == 2 else [(7, 8), (8, 7), (14, 14)]
    xs = [_inputs(i, 2, h, w, 3, k)[0] for i, (h, w) in enumerate(sizes)]
    w = _inputs(99, 1, 1, 1, 3, k)[1]
    outs, refs = _both(lambda i, xs, w: [_conv(i, stride, d, p)(x, w) for x in xs], impl)(xs, w)
    for (h, wd), out, ref in zip(sizes, outs, refs):
        assert (
            out.shape
            == ref.shape
            == (2, output_size(h, k, stride, d, p), output_size(wd, k, stride, d, p), 3)
        )
        _close(out, ref)


@pytest.mark.parametrize(
    "kdp,stride",
    [(kdp, 1) for kdp in DARTS_CONVS]
    + [pytest.param(kdp, 2, marks=pytest.mark.slow) for kdp in DARTS_CONVS],  # -m slow
)
def test_gradients_match_lax(kdp, stride, impl):
    k, d, p = kdp
    x, w = _inputs(7, 2, 8, 7, 3, k)
    g = jax.random.normal(jax.random.PRNGKey(1), _conv("lax", stride, d, p)(x, w).shape)

    def grads(impl, x, w):
        loss = lambda x, w: jnp.sum(jnp.sin(_conv(impl, stride, d, p)(x, w)) * g)
        return jax.grad(loss, argnums=(0, 1))(x, w)

    (dx, dw), (dx_ref, dw_ref) = _both(grads, impl)(x, w)
    _close(dx, dx_ref, _scale(dx_ref))
    _close(dw, dw_ref, _scale(dw_ref))


# Shapes (h, w, c) for the native kernels' register-blocked stride-1 path: rows of w * c floats
# cut into blocks of a multiple of lcm(c, 16) floats (at least 128): whole blocks only (c=16,
# w=16), blocks plus a tail (c=12: blocks of 144, w=13: 156 floats; c=36, w=9: 324), several
# images and row runs; c=17 (a period of 17 vectors) and rows shorter than a block take the
# plain loops. Channel counts of the DARTS networks: 16-64 (search), 36-144 (evaluation).
BLOCKED_SHAPES = [(16, 16, 16), (9, 13, 12), (6, 9, 36), (5, 11, 17), (7, 5, 8)]


@pytest.mark.parametrize(
    "hwc,stride",
    [
        (hwc, stride)
        if (hwc, stride) in {(BLOCKED_SHAPES[0], 1), (BLOCKED_SHAPES[3], 2)}
        else pytest.param(hwc, stride, marks=pytest.mark.slow)  # the full grid: -m slow
        for hwc in BLOCKED_SHAPES
        for stride in (1, 2)
    ],
)
def test_native_blocked_path_matches_lax(hwc, stride):
    """All four DARTS convs, ReLU'd input: forward, input and weight gradients."""
    if not native.available():
        pytest.skip(f"native kernels unavailable: {native.build_error()}")
    h, wd, c = hwc
    x = jax.random.normal(jax.random.PRNGKey(h * wd + c), (3, h, wd, c), jnp.float32)
    ws = [
        jax.random.normal(jax.random.PRNGKey(k + d), (k, k, c), jnp.float32) / k
        for k, d, _ in DARTS_CONVS
    ]

    def run(impl, x, ws):
        outs = []
        for (k, d, p), w in zip(DARTS_CONVS, ws):

            def conv(x, w, k=k, d=d, p=p):
                if impl == "lax":
                    return _conv("lax", stride, d, p)(jax.nn.relu(x), w)
                return depthwise_conv2d(
                    x, w, stride=stride, dilation=d, padding=p, impl=impl, relu=True
                )

            loss = lambda x, w, conv=conv: jnp.sum(jnp.sin(conv(x, w)))
            outs += [conv(x, w), *jax.grad(loss, argnums=(0, 1))(x, w)]
        return outs

    for a, b in zip(*_both(run, "native")(x, ws)):
        _close(a, b, _scale(b))


@pytest.mark.parametrize(
    "kdp,stride", [((3, 1, 1), 1), ((5, 1, 2), 1), ((3, 2, 2), 1), ((5, 2, 4), 2)]
)
def test_second_order_matches_lax(kdp, stride, impl):
    k, d, p = kdp
    x, w = _inputs(3, 2, 8, 7, 3, k)

    def second(impl, x, w):
        conv = _conv(impl, stride, d, p)
        loss = lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) ** 2)

        def outer(x, w):
            gx, gw = jax.grad(loss, argnums=(0, 1))(x, w)
            return jnp.sum(gx**2) + jnp.sum(jnp.sin(gw))

        # The form used in the brief: grad of a function of the input gradient.
        hw = jax.grad(lambda w: jnp.sum(jax.grad(loss, argnums=0)(x, w) ** 2))(w)
        return (*jax.grad(outer, argnums=(0, 1))(x, w), hw)

    for a, b in zip(*_both(second, impl)(x, w)):
        _close(a, b, _scale(b))


@pytest.mark.parametrize("kdp,stride", [((3, 1, 1), 1), ((5, 2, 4), 1), ((3, 1, 1), 2)])
def test_relu_input_matches_lax_of_relu(kdp, stride, impl):
    """relu=True (fused into the native kernels) equals the conv of jax.nn.relu(x): forward,
    gradients (masked by x > 0) and second order."""
    k, d, p = kdp
    x, w = _inputs(11, 2, 8, 7, 3, k)

    def conv(impl):
        if impl == "lax":
            return lambda x, w: _conv("lax", stride, d, p)(jax.nn.relu(x), w)
        return lambda x, w: depthwise_conv2d(
            x, w, stride=stride, dilation=d, padding=p, impl=impl, relu=True
        )

    def all_orders(impl, x, w):
        c = conv(impl)
        loss = lambda x, w: jnp.sum(jnp.tanh(c(x, w)) ** 2)
        gx, gw = jax.grad(loss, argnums=(0, 1))(x, w)
        hw = jax.grad(lambda w: jnp.sum(jax.grad(loss, argnums=0)(x, w) ** 2))(w)
        hx = jax.grad(lambda x: jnp.sum(jnp.sin(jax.grad(loss, argnums=1)(x, w))))(x)
        return c(x, w), gx, gw, hw, hx

    for a, b in zip(*_both(all_orders, impl)(x, w)):
        _close(a, b, _scale(b))


def test_darts_unrolled_step_matches_lax(impl):
    """grad wrt w of the val loss after one SGD step on w (DARTS 2nd order, w as the 'arch')."""
    x, w = _inputs(5, 2, 8, 8, 4, 5)
    xv = jax.random.normal(jax.random.PRNGKey(9), x.shape)

    def hyper(impl, w):
        conv = _conv(impl, 1, 2, 4)
        train = lambda w: jnp.mean((conv(x, w) - x) ** 2)
        val = lambda w: jnp.mean(jnp.tanh(conv(xv, w)) ** 2)
        return jax.grad(lambda w: val(w - 0.5 * jax.grad(train)(w)))(w)

    out, ref = _both(hyper, impl)(w)
    _close(out, ref, _scale(ref))


@pytest.mark.parametrize("kdp,stride", [((5, 2, 4), 2)])
def test_vmap_over_edges_and_jit(kdp, stride, impl):
    k, d, p = kdp
    e = 3
    kx, kw = jax.random.split(jax.random.PRNGKey(11))
    x = jax.random.normal(kx, (e, 2, 8, 7, 3))
    w = jax.random.normal(kw, (e, k, k, 3)) / k

    def run(impl, x, w):
        res = []
        for w_axis, ww in [(0, w), (None, w[0])]:  # per-edge kernels, and one shared kernel
            conv = jax.vmap(_conv(impl, stride, d, p), in_axes=(0, w_axis))
            loss = lambda x, w: jnp.sum(jnp.cos(conv(x, w)))
            outer = lambda w: jnp.sum(jax.grad(loss)(x, w) ** 2)
            res += [conv(x, ww), *jax.grad(loss, (0, 1))(x, ww), jax.grad(outer)(ww)]
        return res

    outs, refs = _both(run, impl)(x, w)
    for a, b in zip(outs, refs):
        _close(a, b, _scale(b))
    # The batched op equals the per-edge op.
    for i in range(e):
        _close(outs[0][i], refs[0][i])
        _close(outs[0][i], jax.jit(_conv("lax", stride, d, p))(x[i], w[i]))


def test_default_padding_is_same_for_stride_one(impl):
    x, w = _inputs(0, 1, 9, 10, 2, 5)

    def f(impl, x, w):
        pads = [None, None] if impl != "lax" else [2, 4]
        return [
            depthwise_conv2d(x, w, dilation=d, padding=p, impl=impl) for d, p in zip((1, 2), pads)
        ]

    for out, ref in zip(*_both(f, impl)(x, w)):
        assert out.shape == x.shape
        _close(out, ref)


def test_shift_impl_uses_custom_vjp_and_no_library_conv():
    x, w = _inputs(0, 1, 8, 8, 2, 3)
    conv = _conv("shift", 1, 1, 1)
    outer = lambda w: jnp.sum(jax.grad(lambda w: jnp.sum(conv(x, w) ** 2))(w) ** 2)
    jaxpr = str(jax.make_jaxpr(jax.grad(outer))(w))
    assert "conv_general_dilated" not in jaxpr
    assert "custom_vjp_call" in str(jax.make_jaxpr(conv)(x, w))
    assert "conv_general_dilated" in str(jax.make_jaxpr(_conv("lax", 1, 1, 1))(x, w))


def test_auto_follows_backend():
    x, w = _inputs(0, 1, 8, 8, 2, 3)
    conv = _conv("auto", 1, 1, 1)
    jaxpr = str(jax.make_jaxpr(conv)(x, w))
    if jax.default_backend() == "cpu":
        assert "custom_vjp_call" in jaxpr and "conv_general_dilated" not in jaxpr
        # The native kernels where they build, forward and backward.
        grad_jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv(x, w) ** 2)))(w))
        uses_native = "jnas_dw_conv" in jaxpr and "jnas_dw_wgrad" in grad_jaxpr
        assert uses_native == native.available()
    else:
        assert "conv_general_dilated" in jaxpr


def test_native_kernels_can_be_turned_off(monkeypatch, tmp_path):
    """JNAS_NATIVE=0, config.runtime.native=False or no compiler: the XLA formulation, with a
    reason."""
    from jnas.ops import settings

    was_available = native.available()
    x, w = _inputs(0, 1, 8, 8, 2, 3)
    try:
        monkeypatch.setenv("JNAS_NATIVE", "0")
        assert not native.available()
        assert "JNAS_NATIVE=0" in native.build_error()
        jaxpr = str(jax.make_jaxpr(_conv("auto", 1, 1, 1))(x, w))
        assert "custom_vjp_call" in jaxpr and "jnas_dw" not in jaxpr
        with pytest.raises(RuntimeError, match="JNAS_NATIVE=0"):
            depthwise_conv2d(x, w, impl="native")
        monkeypatch.delenv("JNAS_NATIVE")
        with settings.use({"native": False}) as resolved:
            assert not resolved.native and not resolved.native_bn and not resolved.native_pw
            assert not native.available()
            assert "config.runtime.native=False" in native.build_error()
            jaxpr = str(jax.make_jaxpr(_conv("auto", 1, 1, 1))(x, w))
            assert "jnas_dw" not in jaxpr
        assert native.available() == was_available  # the switch is back on after the block
        monkeypatch.setenv("CXX", "/bin/false")
        monkeypatch.setenv("JNAS_NATIVE_CACHE", str(tmp_path))
        native.build.cache_clear()
        assert not native.available()
        assert native.build_error()
        with pytest.raises(settings.RuntimeSettingsError, match="native=True cannot hold"):
            with settings.use({"native": True}):
                pass
    finally:
        monkeypatch.undo()
        native.build.cache_clear()
        assert native.available() == was_available


def test_native_rejects_other_dtypes():
    if not native.available():
        pytest.skip(f"native kernels unavailable: {native.build_error()}")
    x, w = _inputs(0, 1, 8, 8, 2, 3)
    with pytest.raises(ValueError, match="float32"):
        depthwise_conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), impl="native")
    # "auto" picks the XLA formulation for them instead.
    out = depthwise_conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16


def test_bad_arguments():
    x, w = _inputs(0, 1, 8, 8, 2, 3)
    with pytest.raises(ValueError, match="impl"):
        depthwise_conv2d(x, w, impl="cudnn")
    with pytest.raises(ValueError):
        depthwise_conv2d(x, w[..., :1])
    with pytest.raises(ValueError):
        depthwise_conv2d(x[:, :2, :2], jnp.ones((5, 5, 2)), padding=0)
    with pytest.raises(ValueError):
        depthwise_conv2d(x, w, stride=0)
