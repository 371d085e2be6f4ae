"""Pointwise (1x1) convolution, ``x @ w`` over channels-last ``x``, with a native weight gradient.

The forward and the input gradient (``dy @ w.T``) are XLA dots, which XLA's CPU backend hands
to YNNPACK fused with their elementwise neighbours. The weight gradient ``x^T dy``, contracted
over every position of the batch, is the exception: XLA's CPU backend first copies ``dy`` into
a transposed ``[co, m]`` buffer and then calls Eigen, which on the 20-cell DARTS evaluation
network cost more than the forward and input-gradient dots together (profiled in BUILD.md).
On the CPU backend, for float32, where :mod:`jnas.ops.native` builds, :func:`pointwise_conv`
computes it with the ``jnas_pw_wgrad`` kernel instead (same result to float rounding). Its own
VJP is two XLA dots (it is bilinear), so second derivatives work. Elsewhere, or with the
``native`` or ``native_pw`` switch of :mod:`jnas.ops.settings` off (read when a network is
traced), it is ``x @ w``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnas.ops import native as _native
from jnas.ops import settings

__all__ = ["native_applies", "pointwise_conv"]


def native_applies(x: jax.Array, w: jax.Array) -> bool:
    """Whether :func:`pointwise_conv` takes its weight gradient from the native kernel."""
    if settings.requested().native_pw is False:
        return False
    return (
        x.dtype == jnp.float32
        and w.dtype == jnp.float32
        and jax.default_backend() == "cpu"
        and _native.available()
    )


@jax.custom_vjp
def _wgrad(x, dy):
    """``x^T dy`` over all leading positions: ``[ci, co]``."""
    return _native.pw_wgrad(x, dy)


def _wgrad_fwd(x, dy):
    return _wgrad(x, dy), (x, dy)


def _wgrad_bwd(res, g):
    x, dy = res
    return (dy @ g.T).astype(x.dtype), (x @ g).astype(dy.dtype)


_wgrad.defvjp(_wgrad_fwd, _wgrad_bwd)


@jax.custom_vjp
def _pointwise(x, w):
    return x @ w


def _pointwise_fwd(x, w):
    return x @ w, (x, w)


def _pointwise_bwd(res, dy):
    x, w = res
    return dy @ w.T, _wgrad(x, dy)


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


def pointwise_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` for ``x`` of shape ``[..., ci]`` and ``w`` of shape ``[ci, co]``."""
    if x.ndim < 2 or w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"pointwise_conv: x {x.shape} and w {w.shape} do not match")
    if not native_applies(x, w):
        return x @ w
    return _pointwise(x, w)
