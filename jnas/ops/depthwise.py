"""Depthwise 2-D convolution with a backend-dependent formulation.

Why this exists
---------------
DARTS-style supernets are dominated by depthwise convolutions (sep_conv_3x3/5x5, dil_conv_3x3/5x5:
about 200 of them in one jitted search step, under ``jax.vmap`` over edges and differentiated twice
for second-order DARTS). XLA's CPU backend runs ``lax.conv_general_dilated`` with
``feature_group_count=C`` very slowly, and its autodiff (a ``batch_group_count`` conv for the
weight gradient, a grouped transposed conv for the input gradient) even more so. On GPU/TPU the
library conv is the right choice, so ``impl="auto"`` picks by ``jax.default_backend()``.

The CPU formulation ("shift") writes the conv as a sum over the kh*kw taps of strided slices of
the padded input times a per-channel weight row. XLA fuses the forward into one loop over the
output. Autodiff of that sum is slow (kh*kw pads/slices and reductions), so it carries a
``jax.custom_vjp`` whose backward is built from the same pieces:

* input gradient: the *same* shifted-slice conv, applied to the output cotangent interior-dilated
  by the stride and padded, with the flipped kernel (the op family "pad with interior dilation,
  then strided dilated valid correlation" is closed under transposition: `_transpose_params`);
* weight gradient: ``dw[i, j, c] = sum_{b,o,p} xpad[b, i*d + o*s, j*d + p*s, c] * dy[b, o, p, c]``,
  computed by a ``lax.scan`` over the taps (one dynamic-slice, multiply, reduce body). It has its
  own ``custom_vjp`` (it is bilinear, so its VJP is one transposed conv and one conv).

Every backward is again made of these two custom-VJP ops plus pads and flips, so reverse-over-
reverse (second-order DARTS), any higher order and ``jax.vmap`` all stay on the fast path, and
the emitted HLO per use stays small: one fused loop per conv and one while loop per weight
gradient. Forward-mode (``jax.jvp``/``jacfwd``) is not supported by ``impl="shift"``
(``custom_vjp``); use ``impl="lax"`` there.

Native kernels ("native", the CPU default where a C++ compiler is found)
------------------------------------------------------------------------
The two primitives above (valid strided dilated correlation of a padded input; its weight
gradient) also exist as C++ kernels called through the XLA FFI (:mod:`jnas.ops.native`, built
on first use). The VJP structure is unchanged, so second order and vmap work the same way. Two
things make them faster inside a network than the XLA loops, beyond the kernels themselves:
the weight gradient reads its inputs once instead of once per tap (5x faster alone: 3.75 ->
0.70 ms at B=32, 32x32x36, k3), and a custom call is a fusion boundary, so XLA no longer
duplicates the unrolled tap sum into each consumer (it did: a BN backward after a depthwise
conv recomputed the 9-tap input gradient in two fusions). Measured on the 2-core CPU:
DARTS_V2 train step (C=36, 8 cells, batch 32) 1.06 -> 0.88 s; DARTS search step (C=16,
5 cells, batch 16, first order) 2.80 -> 1.62 s, compile 131 -> 83 s.

Measurements (this repo's CPU host: 2 cores of an AVX-512 AMD EPYC, jax 0.10.2, float32, NHWC;
``python benchmarks/depthwise.py``, median ms; the host was shared with other jobs (load average
4-8 on 2 cores), so each cell gives the range over three runs; compare within a row):

    B=64, 32x32x16, stride 1   lax fwd   lax f+b | shift fwd shift f+b | compile f+b: lax | shift
    k3 d1 (sep_conv_3x3)         68-85   146-244 |      0.4    3.9-4.6 |   0.30-0.41 s | 0.29-0.51 s
    k5 d1 (sep_conv_5x5)       104-272   222-669 |      0.9     10-31  |   0.12-0.44 s | 0.20-0.56 s
    k5 d2 (dil_conv_5x5)       160-386   346-922 |  1.0-1.3     12-46  |   0.13-0.41 s | 0.20-0.59 s
    B=16, same shapes, k3 / k5 / k5d2: lax f+b 36 / 63 / 110 ms; shift f+b 1.1 / 2.8 / 3.2 ms.
    grad of grad, B=64, k3 / k5d2: lax 806 / 2049 ms; shift 26 / 99 ms; compile ~1 s for both.
    Forward compile alone: lax 0.01-0.06 s, shift 0.15-0.35 s.

Over the default benchmark table (B=64; 32x32x16, 16x16x32, 8x8x64; k3/k5, d1/d2, s1/s2) the
shift forward is 9-300x faster and forward+backward 5-100x faster; the weight-gradient scan is
most of the shift backward. In a DARTS-like program (4 edges x {sep3, sep5, dil3, dil5} with
BN and 1x1 convs; B=16, 16x16x16; grad of the val loss after an unrolled SGD step) one step took
846 ms with lax and 137 ms with shift, compile 6.1 s vs 12.4 s: the unrolled taps cost compile
time (about 2x that of the lax program), paid once per jit. On an H100 (jax 0.11.2) both impls
are launch-bound (0.1-0.5 ms) except the lax backward of dilated convs (3.3 ms vs 0.7 ms for
k5 d2, B=64, 32x32x16), and shift compiles 2-3x longer; ``"auto"`` keeps lax off-CPU.

Formulations measured and rejected (fwd+bwd or wgrad-only, B=64):

* weight gradient as kh*kw unrolled ``jnp.sum(slice * dy, axis=(0, 1, 2))``: 5-10x slower than the
  scan at 32x32x16 (e.g. 19 ms vs 2.8 ms for k3, 50-80 ms vs 5-8 ms for k5) and 1.5-5x longer
  to compile. XLA CPU materialises every tap slice up front (the reductions are separate YNN
  fusions), and once the temporaries pass glibc's 32 MiB mmap threshold every call page-faults
  them in; even with that worked around (MALLOC_* env) it stayed ~2x slower than the scan.
* stacking the taps and one reduce / einsum: 2-10x slower than per-tap (one big materialised
  ``[k*k, B, H, W, C]`` operand).
* a ``fori_loop`` instead of ``scan``: same speed, slower compile; chunking the batch inside the
  scan (to stay in L2): no consistent gain.
* forward as a ``scan`` over taps: 2-9x slower forward (1.2 vs 2.8 ms k3, 1.0 vs 8.9 ms k5 d2 at
  32x32x16) for ~20% less compile time in the DARTS program; kept unrolled.

Caveat: XLA may fuse the unrolled tap sum into elementwise consumers and, when such a value has
several consumers (e.g. a pure residual chain ``x = x + conv(relu(x))`` with no BN/1x1 conv in
between), duplicate it, which blows up compile time quadratically with depth. DARTS cells put a
1x1 conv (a dot) after every depthwise conv, which bounds this (about 10% duplicated slices in the
program above).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jnas.ops import native as _native

__all__ = ["depthwise_conv2d", "output_size"]

# (lo, hi) zero padding of one spatial dimension; may be negative (cropping), as in lax.pad.
_Pad = tuple[int, int]


def output_size(n: int, k: int, stride: int = 1, dilation: int = 1, padding: int | None = None):
    """Output length of one spatial dimension (PyTorch ``Conv2d`` semantics)."""
    if padding is None:
        padding = dilation * (k - 1) // 2
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------------------------
# Reference implementation: XLA's grouped convolution.
# ---------------------------------------------------------------------------------------------


def _lax_depthwise(x, w, stride: int, dilation: int, ph: int, pw: int):
    c = x.shape[-1]
    return lax.conv_general_dilated(
        x,
        w[:, :, None, :],
        window_strides=(stride, stride),
        padding=[(ph, ph), (pw, pw)],
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


# ---------------------------------------------------------------------------------------------
# Shifted-slice formulation.
#
# Per spatial dimension, the generalised op is
#     xd = lax.pad(x, 0, (lo, hi, lhs_dil - 1))           # zero padding + interior dilation
#     y[o] = sum_i xd[o * stride + i * dil] * w[i]          # valid, strided, dilated correlation
# The family is closed under transposition (see `_transpose_params`), so the input gradient is
# the same fast forward applied to the output cotangent with the flipped kernel.
# ---------------------------------------------------------------------------------------------


def _dilate_pad(x, pads: tuple[_Pad, _Pad], lhs_dil: int):
    (hl, hh), (wl, wh) = pads
    if lhs_dil == 1 and hl == hh == wl == wh == 0:
        return x
    zero = jnp.zeros((), x.dtype)
    cfg = [(0, 0, 0)] * (x.ndim - 3) + [(hl, hh, lhs_dil - 1), (wl, wh, lhs_dil - 1), (0, 0, 0)]
    return lax.pad(x, zero, cfg)


def _valid_len(n: int, k: int, stride: int, dil: int) -> int:
    return (n - dil * (k - 1) - 1) // stride + 1


def _tap(xd, i: int, j: int, ho: int, wo: int, stride: int, dil: int):
    """The (i, j) tap of a valid correlation: xd[..., i*dil + o*stride, j*dil + p*stride, :]."""
    lead = xd.ndim - 3
    start = (0,) * lead + (i * dil, j * dil, 0)
    limit = xd.shape[:lead] + (i * dil + (ho - 1) * stride + 1, j * dil + (wo - 1) * stride + 1)
    limit = limit + (xd.shape[-1],)
    return lax.slice(xd, start, limit, (1,) * lead + (stride, stride, 1))


def _conv_valid(xd, w, stride: int, dil: int):
    """Unrolled sum over the kh*kw taps; XLA fuses it into one loop over the output."""
    kh, kw, _ = w.shape
    ho = _valid_len(xd.shape[-3], kh, stride, dil)
    wo = _valid_len(xd.shape[-2], kw, stride, dil)
    out = None
    for i in range(kh):
        for j in range(kw):
            term = _tap(xd, i, j, ho, wo, stride, dil) * w[i, j]
            out = term if out is None else out + term
    return out


def _wgrad_valid(xd, dy, kh: int, kw: int, stride: int, dil: int):
    """dw[i, j, c] = sum_{b,o,p} xd[b, i*dil + o*stride, j*dil + p*stride, c] * dy[b, o, p, c].

    A `lax.scan` over the taps: one (dynamic-slice, multiply, reduce) body instead of kh*kw
    unrolled reductions.
    """
    b, hd, wd, c = xd.shape
    ho, wo = dy.shape[1], dy.shape[2]
    hwin, wwin = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    offs = jnp.array([(i * dil, j * dil) for i in range(kh) for j in range(kw)], jnp.int32)
    zero = jnp.zeros((), jnp.int32)

    def body(carry, off):
        win = lax.dynamic_slice(xd, (zero, off[0], off[1], zero), (b, hwin, wwin, c))
        if stride > 1:
            win = lax.slice(win, (0, 0, 0, 0), win.shape, (1, stride, stride, 1))
        return carry, jnp.sum(win * dy, axis=(0, 1, 2))

    _, dw = lax.scan(body, None, offs)
    return dw.reshape(kh, kw, c)


def _transpose_params(n: int, k: int, stride: int, dil: int, lhs_dil: int, pad: _Pad):
    """Parameters of the op computing dx from dy, for one spatial dimension of length n.

    dxd[r] = sum_{o,i : o*stride + i*dil = r} dy[o] w[i] is a stride-1 correlation of
    dy (interior-dilated by `stride`) with the flipped kernel; reading dx[m] = dxd[lo + m*lhs_dil]
    turns it into a correlation with stride `lhs_dil` and these paddings.
    """
    lo, _ = pad
    nd = (n - 1) * lhs_dil + 1 + pad[0] + pad[1]
    no = _valid_len(nd, k, stride, dil)
    lo_t = (k - 1) * dil - lo
    hi_t = (n - 1) * lhs_dil + lo - (no - 1) * stride
    return (lo_t, hi_t)


def _transpose_pads(shape, kh: int, kw: int, stride: int, dil: int, lhs_dil: int, pads):
    """`_transpose_params` for both spatial dimensions of an NHWC ``shape``."""
    return (
        _transpose_params(shape[1], kh, stride, dil, lhs_dil, pads[0]),
        _transpose_params(shape[2], kw, stride, dil, lhs_dil, pads[1]),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7))
def _shift_conv(
    x,
    w,
    stride: int,
    dil: int,
    lhs_dil: int,
    pads: tuple[_Pad, _Pad],
    native: bool = False,
    relu: bool = False,
):
    """The conv of ``x`` (``max(x, 0)`` with ``relu``: native kernels, ``lhs_dil`` 1 only)."""
    if native and lhs_dil == 1:
        # The kernel pads (and applies the ReLU) in place: no padded copy of x.
        kh, kw, _ = w.shape
        (hl, hh), (wl, wh) = pads
        ho = _valid_len(x.shape[1] + hl + hh, kh, stride, dil)
        wo = _valid_len(x.shape[2] + wl + wh, kw, stride, dil)
        return _native.dw_conv(x, w, stride, dil, (hl, wl), (ho, wo), relu)
    assert not relu, "relu is fused into the native kernels only"
    xd = _dilate_pad(x, pads, lhs_dil)
    if native:
        return _native.dw_conv(xd, w, stride, dil)
    return _conv_valid(xd, w, stride, dil)


def _shift_conv_fwd(x, w, stride, dil, lhs_dil, pads, native, relu):
    return _shift_conv(x, w, stride, dil, lhs_dil, pads, native, relu), (x, w)


def _shift_conv_bwd(stride, dil, lhs_dil, pads, native, relu, res, dy):
    x, w = res
    kh, kw, _ = w.shape
    pads_t = _transpose_pads(x.shape, kh, kw, stride, dil, lhs_dil, pads)
    dx = _shift_conv(dy, w[::-1, ::-1], lhs_dil, dil, stride, pads_t, native)
    if relu:
        dx = jnp.where(x > 0, dx, 0.0)
    if lhs_dil == 1:
        dw = _shift_wgrad(x, dy, kh, kw, stride, dil, pads, native, relu)
    else:
        xd = _dilate_pad(x, pads, lhs_dil)
        dw = _shift_wgrad(xd, dy, kh, kw, stride, dil, ((0, 0), (0, 0)), native)
    return dx, dw


_shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7, 8))
def _shift_wgrad(
    x,
    dy,
    kh: int,
    kw: int,
    stride: int,
    dil: int,
    pads: tuple[_Pad, _Pad],
    native: bool = False,
    relu: bool = False,
):
    """The weight gradient of a conv of ``x`` (``max(x, 0)`` with ``relu``, native only)
    zero-padded by ``pads`` (no interior dilation)."""
    if native:
        return _native.dw_wgrad(x, dy, kh, kw, stride, dil, (pads[0][0], pads[1][0]), relu)
    assert not relu, "relu is fused into the native kernels only"
    return _wgrad_valid(_dilate_pad(x, pads, 1), dy, kh, kw, stride, dil)


def _shift_wgrad_fwd(x, dy, kh, kw, stride, dil, pads, native, relu):
    return _shift_wgrad(x, dy, kh, kw, stride, dil, pads, native, relu), (x, dy)


def _shift_wgrad_bwd(kh, kw, stride, dil, pads, native, relu, res, g):
    # The weight gradient is bilinear in (relu(x), dy): its VJP is a transposed conv and a conv.
    x, dy = res
    pads_t = _transpose_pads(x.shape, kh, kw, stride, dil, 1, pads)
    dx = _shift_conv(dy, g[::-1, ::-1], 1, dil, stride, pads_t, native)
    if relu:
        dx = jnp.where(x > 0, dx, 0.0)
    ddy = _shift_conv(x, g, stride, dil, 1, pads, native, relu)
    return dx, ddy


_shift_wgrad.defvjp(_shift_wgrad_fwd, _shift_wgrad_bwd)


# ---------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------


def depthwise_conv2d(
    x,
    w,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: int | None = None,
    impl: str = "auto",
    relu: bool = False,
):
    """Depthwise 2-D convolution (PyTorch ``Conv2d(C, C, k, groups=C, bias=False)`` semantics).

    Args:
      x: ``[B, H, W, C]`` input (NHWC).
      w: ``[kh, kw, C]`` per-channel kernels.
      stride: spatial stride (same on H and W).
      dilation: kernel dilation (same on H and W).
      padding: symmetric zero padding on H and W; ``None`` means ``dilation * (k - 1) // 2``
        per dimension ("same" for stride 1 and odd k).
      impl: ``"lax"`` (``lax.conv_general_dilated`` with ``feature_group_count=C``), ``"shift"``
        (sum of shifted slices with a hand-written VJP that is itself differentiable),
        ``"native"`` (the same VJP structure, its two primitives run by the C++ kernels of
        :mod:`jnas.ops.native`; CPU, float32), or ``"auto"`` (on the CPU backend ``"native"``
        where the kernels build and the dtype is float32, else ``"shift"``; ``"lax"`` on
        GPU/TPU).
      relu: convolve ``max(x, 0)`` (the ReLU in front of every DARTS depthwise conv). The
        native kernels apply it as they read ``x`` (no ReLU'd copy; the backward masks by
        ``x > 0`` like ``jax.nn.relu``); the other impls apply ``jax.nn.relu`` first.

    Returns:
      ``[B, Ho, Wo, C]`` with ``Ho = (H + 2*padding - dilation*(kh-1) - 1) // stride + 1``.
    """
    if x.ndim != 4 or w.ndim != 3 or w.shape[-1] != x.shape[-1]:
        raise ValueError(f"expected x [B,H,W,C] and w [kh,kw,C]; got {x.shape} and {w.shape}")
    kh, kw, _ = w.shape
    if stride < 1 or dilation < 1 or (padding is not None and padding < 0):
        raise ValueError(
            f"need stride, dilation >= 1 and padding >= 0; got {stride=}, {dilation=}, {padding=}"
        )
    if padding is None:
        ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    else:
        ph = pw = padding
    if (
        output_size(x.shape[1], kh, stride, dilation, ph) < 1
        or output_size(x.shape[2], kw, stride, dilation, pw) < 1
    ):
        raise ValueError(
            f"kernel {w.shape[:2]} (dilation {dilation}) does not fit the padded "
            f"input {x.shape[1:3]} (padding {ph}, {pw})"
        )
    dtype = jnp.result_type(x, w)
    if impl == "auto":
        if jax.default_backend() != "cpu":
            impl = "lax"
        elif dtype == jnp.float32 and _native.available():
            impl = "native"
        else:
            impl = "shift"
    if relu and impl != "native":
        x = jax.nn.relu(x)
    if impl == "lax":
        return _lax_depthwise(x, w, stride, dilation, ph, pw)
    if impl in ("shift", "native"):
        native = impl == "native"
        if native and not _native.available():
            raise RuntimeError(f"impl='native' needs the native kernels: {_native.build_error()}")
        if native and dtype != jnp.float32:
            raise ValueError(f"impl='native' supports float32 only, got {dtype}")
        x, w = x.astype(dtype), w.astype(dtype)
        pads = ((ph, ph), (pw, pw))
        return _shift_conv(x, w, stride, dilation, 1, pads, native, relu and native)
    raise ValueError(f"unknown impl {impl!r}; expected 'auto', 'lax', 'shift' or 'native'")
