"""The ops of GDAS's fixed reduction cell, "FRC" (Dong & Yang, CVPR 2019, Sec. 3.3, Fig. 3).

GDAS-FRC searches the normal cell only; every reduction cell is a hand-designed one. Its
four nodes each take one input (``D-X-Y/AutoDL-Projects``, ``GDAS_Reduction_Cell``)::

    X0 = frc_conv_1x3_3x1(s0)   X1 = frc_conv_1x3_3x1(s1)
    X2 = max_pool_3x3_bn(s0)    X3 = max_pool_3x3_bn(s1)     output = concat(X0..X3)

* ``frc_conv_1x3_3x1``: ReLU, a 1x3 conv striding along the width, a 3x1 conv striding along
  the height (both grouped in 8), BN, ReLU, a 1x1 conv, BN. As in that code, the convs
  carry a bias exactly when the batch norms do not learn one (``bias = not affine``).
* ``max_pool_3x3_bn``: 3x3 max pool (padding 1) then BN (affine in the evaluation network,
  unlike DARTS's pools, which have no BN there).

Both are registered ops, so that a genotype may name them and the evaluation network builds
them with :func:`jnas.ops.primitives.make_op`; :mod:`jnas.ops.primitives` imports this module,
so they are registered wherever any op is.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from jax import lax

from jnas.ops import layers
from jnas.ops.primitives import register_op

FRC_GROUPS = 8


class GroupedConv2d(nn.Module):
    """``torch.nn.Conv2d(C, C, kernel, stride, padding, groups, bias)`` over NHWC."""

    features: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int = 1
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        c_in = x.shape[-1]
        if c_in % self.groups or self.features % self.groups:
            raise ValueError(
                f"a conv grouped in {self.groups} needs channel counts divisible by "
                f"{self.groups}, got {c_in} -> {self.features}"
            )
        fan_in = (c_in // self.groups) * kh * kw
        kernel = self.param(
            "kernel", layers.torch_init, (kh, kw, c_in // self.groups, self.features)
        )
        y = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=self.stride,
            padding=tuple((p, p) for p in self.padding),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups,
        )
        if self.use_bias:
            bound = 1.0 / np.sqrt(fan_in)
            bias = self.param(
                "bias",
                lambda k, s: jax.random.uniform(k, s, minval=-bound, maxval=bound),
                (self.features,),
            )
            y = y + bias
        return y


class FrcConv(nn.Module):
    """ReLU, 1x3 and 3x1 grouped convs (the stride split over them), BN, ReLU, 1x1, BN."""

    features: int
    stride: int = 2
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        c, s, bias = self.features, self.stride, not self.affine
        ura = not train
        x = GroupedConv2d(c, (1, 3), (1, s), (0, 1), FRC_GROUPS, bias)(nn.relu(x))
        x = GroupedConv2d(c, (3, 1), (s, 1), (1, 0), FRC_GROUPS, bias)(x)
        x = layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=ura)
        x = GroupedConv2d(c, (1, 1), (1, 1), (0, 0), 1, bias)(nn.relu(x))
        return layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=ura)


class MaxPoolBN(nn.Module):
    """3x3 max pool (padding 1), then BN."""

    stride: int = 2
    affine: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        x = layers.max_pool(x, 3, self.stride, 1)
        return layers.batch_norm(self.affine, self.bn_axis_name)(x, use_running_average=not train)


@register_op("frc_conv_1x3_3x1")
def _frc_conv(c, stride, affine, axis, search, name=None):
    return FrcConv(c, stride, affine, axis, name=name)


@register_op("max_pool_3x3_bn")
def _max_pool_bn(c, stride, affine, axis, search, name=None):
    return MaxPoolBN(stride, affine, axis, name=name)
