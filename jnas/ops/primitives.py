"""The candidate operations of cell-based NAS (DARTS, Liu et al. 2019, and its descendants).

Each op is a Flax module built by :func:`make_op` from its name, its output channel count
``C`` and its stride; ``__call__(x, train)`` maps NHWC features with ``C`` channels to ``C``
channels (at half the resolution when ``stride == 2``). Orderings and paddings follow the
DARTS code (``cnn/operations.py``): ReLU-Conv-BN, separable convolutions applied twice,
``skip_connect`` becomes a factorized reduction at stride 2, and batch norm is non-affine
during search (``affine=False``).

New ops are added with :func:`register_op`; names are checked, and an unknown one raises
:class:`UnknownOpError` naming the known ones. The ops of :mod:`jnas.ops.frc` are registered
by importing this module, so every jnas op is known once any genotype can be parsed.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jnas.errors import JnasError
from jnas.ops import layers

# The DARTS search space's 8 primitives, in the order of the DARTS code (genotypes.py).
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class UnknownOpError(ValueError, JnasError):
    """An op name that is not in the registry."""


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (no gradient flows through it)."""

    stride: int = 1

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train
        return jnp.zeros_like(x[:, :: self.stride, :: self.stride, :])


class Identity(nn.Module):
    """``skip_connect`` at stride 1."""

    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train
        return x


class ReLUConvBN(nn.Module):
    """ReLU, a dense convolution without bias, batch norm."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        k = self.kernel_size
        x = layers.Conv2d(
            self.features, (k, k), (self.stride, self.stride), (self.padding, self.padding)
        )(nn.relu(x))
        return layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=not train)


class DilConv(nn.Module):
    """ReLU, depthwise k x k conv (dilated), pointwise 1x1 conv, batch norm."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = layers.DepthwiseConv2d(
            self.kernel_size, self.stride, self.padding, self.dilation, relu_input=True
        )(x)
        x = layers.Conv2d(self.features, (1, 1))(x)
        return layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=not train)


class SepConv(nn.Module):
    """Two stacked DilConv blocks without dilation; only the first one strides."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        c_in = x.shape[-1]
        kw = dict(affine=self.affine, bn_axis_name=self.bn_axis_name)
        x = DilConv(c_in, self.kernel_size, self.stride, self.padding, 1, **kw)(x, train)
        return DilConv(self.features, self.kernel_size, 1, self.padding, 1, **kw)(x, train)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated, then BN."""

    features: int
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if self.features % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {self.features}")
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(
                "FactorizedReduce needs even spatial sizes (as in the DARTS code), got "
                f"{x.shape[1]}x{x.shape[2]}; choose an input size that stays even until the "
                "last reduction cell"
            )
        x = nn.relu(x)
        half = self.features // 2
        a = layers.Conv2d(half, (1, 1), (2, 2))(x)
        b = layers.Conv2d(half, (1, 1), (2, 2))(x[:, 1:, 1:, :])
        out = jnp.concatenate([a, b], axis=-1)
        return layers.batch_norm(self.affine, self.bn_axis_name)(out, use_running_average=not train)


class Pool(nn.Module):
    """3x3 max or average pooling (padding 1, average excludes the padding).

    ``bn`` appends a non-affine batch norm, as the DARTS search network does for pools.
    """

    kind: str
    stride: int = 1
    bn: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        pool = layers.max_pool if self.kind == "max" else layers.avg_pool
        x = pool(x, 3, self.stride, 1)
        if self.bn:
            x = layers.batch_norm(False, self.bn_axis_name)(x, use_running_average=not train)
        return x


class Conv7x1_1x7(nn.Module):  # noqa: N801 (the op's published name)
    """ReLU, 1x7 conv, 7x1 conv, BN (used by AmoebaNet)."""

    features: int
    stride: int
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        s = self.stride
        x = layers.Conv2d(self.features, (1, 7), (1, s), (0, 3))(nn.relu(x))
        x = layers.Conv2d(self.features, (7, 1), (s, 1), (3, 0))(x)
        return layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=not train)


# name -> factory(C, stride, affine, bn_axis_name, search, name=...) -> module.
# `search` marks the search network, where the DARTS code appends BN to pools; `name` is the
# Flax module name.
OpFactory = Callable[..., nn.Module]
_OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator that adds an op factory to the registry under ``name``."""

    def deco(factory: OpFactory) -> OpFactory:
        if name in _OPS:
            raise ValueError(f"op {name!r} is already registered")
        _OPS[name] = factory
        return factory

    return deco


def known_ops() -> tuple[str, ...]:
    """The names of all registered ops."""
    return tuple(_OPS)


def check_op(name: str) -> None:
    """Raise :class:`UnknownOpError` when ``name`` is not a registered op."""
    if name not in _OPS:
        raise UnknownOpError(f"unknown op {name!r}; known ops: {', '.join(sorted(_OPS))}")


def make_op(
    name: str,
    features: int,
    stride: int,
    *,
    affine: bool = True,
    bn_axis_name: str | None = None,
    search: bool = False,
    module_name: str | None = None,
) -> nn.Module:
    """Build the op ``name`` mapping ``features`` channels to ``features`` channels.

    Args:
      name: a registered op name, e.g. ``"sep_conv_3x3"``.
      features: the channel count C.
      stride: 1, or 2 in a reduction cell's edges from the cell inputs.
      affine: whether its batch norms learn scale and bias (False during DARTS search).
      bn_axis_name: pmap axis over which batch statistics are averaged.
      search: build the search-network variant (the DARTS code adds BN after pools).
      module_name: the Flax module name.

    Returns:
      A module called as ``op(x, train)``.
    """
    check_op(name)
    return _OPS[name](features, stride, affine, bn_axis_name, search, name=module_name)


@register_op("none")
def _none(c, stride, affine, axis, search, name=None):
    return Zero(stride, name=name)


@register_op("max_pool_3x3")
def _max_pool(c, stride, affine, axis, search, name=None):
    return Pool("max", stride, bn=search, bn_axis_name=axis, name=name)


@register_op("avg_pool_3x3")
def _avg_pool(c, stride, affine, axis, search, name=None):
    return Pool("avg", stride, bn=search, bn_axis_name=axis, name=name)


@register_op("skip_connect")
def _skip(c, stride, affine, axis, search, name=None):
    return Identity(name=name) if stride == 1 else FactorizedReduce(c, affine, axis, name=name)


def _sep(k):
    def factory(c, stride, affine, axis, search, name=None):
        return SepConv(c, k, stride, k // 2, affine, axis, name=name)

    return factory


def _dil(k):
    def factory(c, stride, affine, axis, search, name=None):
        return DilConv(c, k, stride, k - 1, 2, affine, axis, name=name)

    return factory


register_op("sep_conv_3x3")(_sep(3))
register_op("sep_conv_5x5")(_sep(5))
register_op("sep_conv_7x7")(_sep(7))
register_op("dil_conv_3x3")(_dil(3))
register_op("dil_conv_5x5")(_dil(5))


@register_op("conv_7x1_1x7")
def _conv7(c, stride, affine, axis, search, name=None):
    return Conv7x1_1x7(c, stride, affine, axis, name=name)


# Ops defined in other modules register when their module is imported; importing them here
# makes every op known wherever a genotype is checked (GDAS's fixed reduction cell, which
# `experiments.train` must build from a genotype file with nothing else imported).
from jnas.ops import frc as _frc  # noqa: E402, F401
