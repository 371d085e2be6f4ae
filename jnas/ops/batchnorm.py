"""Batch norm with native CPU kernels: :class:`BatchNorm`, a drop-in ``flax.linen.BatchNorm``.

Same fields, variables (``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``),
statistics (biased variance ``E x^2 - (E x)^2``, averaged over ``axis_name`` under pmap, not
across devices while initialising) and running-average update as Flax's. On the CPU backend,
for float32 inputs normalised over the last axis and where :mod:`jnas.ops.native` builds, it
runs as four kernels instead of XLA's loops:

* forward: ``(m, m2) = stats(x)``; ``y = a x + b`` with ``a = scale / sqrt(var + eps)``,
  ``b = bias - m a``, left to XLA, which fuses it into the consumers of ``y`` (no pass of its
  own where those are XLA ops: 20-cell train step, 7 % less CPU time than the ``affine``
  kernel, which needs its own pass);
* backward (one custom VJP): ``(E g, E g x) = dsums(g, x)``; then
  ``dx = affine2(g, x, a, k, r)``, i.e. ``dx = a g + k x + r`` with per-channel ``k``, ``r``.

That is at most two passes over the activations forward and two backward, and a fusion
boundary: XLA otherwise recomputes the normalisation inside several backward fusions
(profiled in BUILD.md). Each kernel has its own VJP written with the others, so second
derivatives (DARTS's second-order step) work, and vmap runs one kernel call over all vmapped
instances.
Elsewhere (other backends or dtypes, the ``native`` or ``native_bn`` switch of
:mod:`jnas.ops.settings` off, masks, axis index groups) it is Flax's own code.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import module as flax_module

from jnas.ops import native as _native
from jnas.ops import settings

__all__ = ["BatchNorm", "batch_norm_train", "native_applies"]


def _rows(x: jax.Array) -> int:
    return x.size // x.shape[-1]


# --- The kernels, each with a VJP written in the others (so the VJPs are differentiable). ---


@jax.custom_vjp
def _stats(x):
    return _native.bn_stats(x)


def _stats_fwd(x):
    return _stats(x), x


def _stats_bwd(x, g):
    g1, g2 = g
    m = _rows(x)
    return (_affine(x, 2.0 * g2 / m, g1 / m),)


_stats.defvjp(_stats_fwd, _stats_bwd)


@jax.custom_vjp
def _dsums(u, x):
    return _native.bn_dsums(u, x)


def _dsums_fwd(u, x):
    return _dsums(u, x), (u, x)


def _dsums_bwd(res, g):
    u, x = res
    g1, g2 = g
    m = _rows(x)
    return _affine(x, g2 / m, g1 / m), _affine(u, g2 / m, jnp.zeros_like(g2))


_dsums.defvjp(_dsums_fwd, _dsums_bwd)


@jax.custom_vjp
def _affine(x, a, b):
    return _native.bn_affine(x, a, b)


def _affine_fwd(x, a, b):
    return _affine(x, a, b), (x, a)


def _affine_bwd(res, g):
    x, a = res
    m = _rows(x)
    mean_g, mean_gx = _dsums(g, x)
    return _affine(g, a, jnp.zeros_like(a)), m * mean_gx, m * mean_g


_affine.defvjp(_affine_fwd, _affine_bwd)


@jax.custom_vjp
def _affine2(u, v, p, q, r):
    return _native.bn_affine2(u, v, p, q, r)


def _affine2_fwd(u, v, p, q, r):
    return _affine2(u, v, p, q, r), (u, v, p, q)


def _affine2_bwd(res, g):
    u, v, p, q = res
    m = _rows(u)
    zero = jnp.zeros_like(p)
    mean_g, mean_gu = _dsums(g, u)
    _, mean_gv = _dsums(g, v)
    return _affine(g, p, zero), _affine(g, q, zero), m * mean_gu, m * mean_gv, m * mean_g


_affine2.defvjp(_affine2_fwd, _affine2_bwd)


# --- Training-mode batch norm. ---


def _pmean(tree, axis_name):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _coefficients(m, var, scale, bias, eps):
    inv = jax.lax.rsqrt(var + eps)
    a = inv if scale is None else inv * scale
    b = -m * a if bias is None else bias - m * a
    return inv, a, b


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x, scale, bias, eps: float, axis_name):
    """``(y, mean, var)``: ``x`` normalised over all axes but the last with its batch statistics.

    ``scale`` and ``bias`` are per-channel arrays or None; under pmap with ``axis_name`` the
    statistics are averaged over devices (as ``flax.linen.BatchNorm`` does). Needs the native
    kernels (:func:`native_applies`).
    """
    return _batch_norm_train_fwd(x, scale, bias, eps, axis_name)[0]


def _batch_norm_train_fwd(x, scale, bias, eps, axis_name):
    m, m2 = _pmean(_stats(x), axis_name)
    var = jnp.maximum(m2 - m * m, 0.0)
    inv, a, b = _coefficients(m, var, scale, bias, eps)
    y = x * a + b  # XLA: fused into the consumers (no pass of its own where they are XLA ops)
    return (y, m, var), (x, m, inv, a, scale, bias)


def _batch_norm_train_bwd(eps, axis_name, res, g):
    x, m, inv, a, scale, bias = res
    gy, gm, gv = g
    n = _rows(x)
    mean_g, mean_gx = _dsums(gy, x)
    # Parameter gradients are per device (the step averages gradients across devices).
    dscale = None if scale is None else n * inv * (mean_gx - m * mean_g)
    dbias = None if bias is None else n * mean_g
    # dx = a (gy - E gy - xhat E[gy xhat]) + (E-cotangents of the returned mean and var).
    g1, gx, gm, gv = _pmean((mean_g, mean_gx, gm, gv), axis_name)
    g2 = inv * (gx - m * g1)
    k = 2.0 * gv / n - a * inv * g2
    r = gm / n - a * g1 - k * m
    dx = _affine2(gy, x, a, k, r)
    return dx, dscale, dbias


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


def native_applies(x: jax.Array) -> bool:
    """Whether :class:`BatchNorm` runs ``x`` on the native kernels (the ``native_bn`` switch
    of :mod:`jnas.ops.settings`, read when a network is traced, turns them off for batch norm
    alone)."""
    if settings.requested().native_bn is False:
        return False
    return x.dtype == jnp.float32 and jax.default_backend() == "cpu" and _native.available()


class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` on native CPU kernels where they apply (see the module doc)."""

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        fast = (
            mask is None
            and self.axis in (-1, x.ndim - 1)
            and self.axis_index_groups is None
            and self.use_fast_variance
            and self.force_float32_reductions
            and self.dtype in (None, jnp.float32)
            and self.param_dtype == jnp.float32
            and native_applies(x)
        )
        if not fast:
            return super().__call__(x, use_running_average, mask=mask)
        use_running_average = flax_module.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        shape = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), shape)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), shape)
        scale = self.param("scale", self.scale_init, shape, jnp.float32) if self.use_scale else None
        bias = self.param("bias", self.bias_init, shape, jnp.float32) if self.use_bias else None
        if use_running_average:
            _, a, b = _coefficients(ra_mean.value, ra_var.value, scale, bias, self.epsilon)
            return _affine(x, a, b)
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, axis_name)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y
