"""Edge modules for the DARTS supernet beyond DARTS's :class:`~jnas.spaces.darts.MixedOp`.

:class:`~jnas.spaces.darts.SearchNetwork` builds every edge as
``mixed_op(features, stride, primitives, bn_axis_name)`` and calls it as
``edge(x, arch_e, train)`` with the edge's slice of the architecture pytree. The modules
here only say how an edge combines its candidate ops; how the slices are computed from
architecture parameters (sampling, softmax, schedules) is the strategies' business.

* :class:`SampledMixedOp` (GDAS): ``arch_e = {"hard": [K], "index": int}``; only the sampled
  op runs.
* :class:`PartialChannelMixedOp` (PC-DARTS): ``arch_e = {"ops": [K], "edge": scalar}``
  (``"edge"`` optional); only ``1/k`` of the channels go through the ops.
* :class:`SkipDropMixedOp` (P-DARTS): ``arch_e = {"ops": [K], "skip_drop": scalar}``;
  dropout after the parameter-free skip connection.

Also here: the fixed reduction cell of GDAS-FRC written as per-edge op sets, so that the same
supernet carries it (:func:`fixed_cell_primitives`).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jnas.ops import frc as _frc  # noqa: F401 (registers the FRC ops)
from jnas.ops import layers
from jnas.ops.primitives import make_op
from jnas.spaces.darts import weighted_sum_of_ops

# The GDAS fixed reduction cell as a DARTS genotype cell: node k takes one input through
# its op, its second edge is "none" (the DARTS genotype has two edges per node).
FRC_REDUCE_CELL: tuple[tuple[str, int], ...] = (
    ("frc_conv_1x3_3x1", 0),
    ("none", 1),
    ("frc_conv_1x3_3x1", 1),
    ("none", 0),
    ("max_pool_3x3_bn", 0),
    ("none", 1),
    ("max_pool_3x3_bn", 1),
    ("none", 0),
)


def fixed_cell_primitives(cell, n_nodes: int = 4) -> tuple[tuple[str], ...]:
    """One single-op tuple per supernet edge (DARTS order) that reproduces a fixed cell.

    Edges that the cell does not use get ``("none",)``, which adds nothing.

    Args:
      cell: ``(op, input)`` pairs, two per node, as in a :class:`Genotype`.
      n_nodes: intermediate nodes.

    Returns:
      A tuple of ``(op,)`` per edge, for ``SearchNetwork(primitives={"reduce": ...})``.
    """
    if len(cell) != 2 * n_nodes:
        raise ValueError(f"a fixed cell needs {2 * n_nodes} edges, got {len(cell)}")
    chosen: dict[tuple[int, int], str] = {}
    for k, (op, i) in enumerate(cell):
        j = k // 2
        if not 0 <= i < j + 2:
            raise ValueError(f"node {j} of the fixed cell cannot take input {i}")
        if op == "none":
            continue
        if (i, j) in chosen:
            raise ValueError(f"node {j} takes input {i} twice in the fixed cell")
        chosen[(i, j)] = op
    return tuple((chosen.get((i, j), "none"),) for j in range(n_nodes) for i in range(j + 2))


class SampledMixedOp(nn.Module):
    """GDAS's edge: only the sampled op is computed (Dong & Yang, CVPR 2019, Eq. 4-6).

    ``arch_e["hard"]`` is the straight-through one-hot sample ``h`` (forward: one-hot,
    backward: the Gumbel-softmax gradient) and ``arch_e["index"]`` its argmax. As in the
    official code (``forward_gdas``), the output is::

        h[index] * op_index(x) + sum_{k != index} h[k]

    The second term is zero in the forward pass; it lets the gradient of the unsampled
    entries of ``h`` flow (with a constant in place of their op outputs).

    Why the saving survives ``jit``: the op is picked with ``nn.switch`` (``lax.switch``),
    which XLA compiles to a ``conditional`` that runs one branch, forward and backward. A
    switch under ``vmap`` with a batched index would become a ``select`` over all branches,
    so the network must run these edges one by one (``SearchNetwork(vmap_edges=False)``),
    never in a vmapped group.
    """

    features: int
    stride: int
    primitives: tuple[str, ...]
    bn_axis_name: str | None = None

    def setup(self):
        self.ops = {
            name: make_op(
                name,
                self.features,
                self.stride,
                affine=False,
                bn_axis_name=self.bn_axis_name,
                search=True,
            )
            for name in self.primitives
        }

    def __call__(self, x: jax.Array, arch, train: bool = True) -> jax.Array:
        hard, index = arch["hard"], arch["index"]
        if len(self.primitives) == 1:  # a fixed op (e.g. the GDAS-FRC reduction cell)
            return hard[0] * self.ops[self.primitives[0]](x, train)

        def branch(name, mdl, x):
            return mdl.ops[name](x, train)

        branches = [functools.partial(branch, name) for name in self.primitives]
        if self.is_mutable_collection("params"):
            # Initialisation creates every op's variables (and needs no switch).
            y = jnp.stack([b(self, x) for b in branches])[index]
        else:
            y = nn.switch(index, branches, self, x)
        sampled = jax.nn.one_hot(index, len(self.primitives), dtype=bool)
        rest = jnp.sum(jnp.where(sampled, 0.0, hard))
        return hard[index] * y + rest


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """ShuffleNet's channel shuffle over NHWC (PC-DARTS ``channel_shuffle``).

    Channels viewed as ``[groups, C // groups]`` are transposed to ``[C // groups, groups]``:
    output channel ``i * groups + g`` is input channel ``g * (C // groups) + i``.
    """
    *lead, c = x.shape
    if c % groups:
        raise ValueError(f"channel shuffle needs groups ({groups}) to divide channels ({c})")
    x = x.reshape(*lead, groups, c // groups)
    return jnp.swapaxes(x, -1, -2).reshape(*lead, c)


class PartialChannelMixedOp(nn.Module):
    """PC-DARTS's edge (Xu et al., ICLR 2020, Sec. 3.2, Eq. 3): partial channel connections.

    The first ``C / k`` channels go through the DARTS mixed op (ops built for ``C / k``
    channels); the other channels bypass it (max-pooled 2x2 when the edge strides); the two
    parts are concatenated and channel-shuffled, so that the next edge sees other channels
    first. As the official code, the sampled channels are a fixed slice rather than a
    random mask; the shuffle moves the choice around. With ``arch_e["edge"]`` (edge
    normalization, Eq. 4) the edge's output is scaled by its normalized edge weight.

    With ``k = 1`` and no ``"edge"`` it computes exactly :class:`MixedOp`.
    """

    features: int
    stride: int
    primitives: tuple[str, ...]
    bn_axis_name: str | None = None
    k: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, arch, train: bool = True) -> jax.Array:
        weights = arch["ops"]
        c = x.shape[-1]
        if c % self.k:
            raise ValueError(f"PC-DARTS: k={self.k} must divide the edge's channels ({c})")
        part = c // self.k
        xa = x[..., :part]
        out = weighted_sum_of_ops(
            xa, weights, self.primitives, part, self.stride, train, self.bn_axis_name
        )
        if self.k > 1:
            rest = x[..., part:]
            if self.stride == 2:
                rest = layers.max_pool(rest, 2, 2, 0)
            out = channel_shuffle(jnp.concatenate([out, rest], axis=-1), self.k)
        if "edge" in arch:
            out = arch["edge"] * out
        return out


def partial_channel_op(k: int):
    """The :class:`PartialChannelMixedOp` class with ``k`` bound, for ``SearchNetwork``."""
    return functools.partial(PartialChannelMixedOp, k=k)


class SkipDropMixedOp(nn.Module):
    """P-DARTS's edge (Chen et al., ICCV 2019, Sec. 3.3): the DARTS mixed op with
    operation-level dropout after the parameter-free skip connection.

    As the official code, the dropout is elementwise (``nn.Dropout``, kept values scaled by
    ``1 / (1 - p)``), only on ``skip_connect`` at stride 1 (at stride 2 it is a factorized
    reduction with parameters), and only in training. The rate ``arch_e["skip_drop"]`` is
    an array, so that its schedule does not recompile the step.
    """

    features: int
    stride: int
    primitives: tuple[str, ...]
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, arch, train: bool = True) -> jax.Array:
        weights, rate = arch["ops"], arch["skip_drop"]

        def skip_dropout(name, y):
            if name != "skip_connect" or self.stride != 1 or not train:
                return y
            keep = 1.0 - rate
            mask = jax.random.bernoulli(self.make_rng("dropout"), keep, y.shape)
            return jnp.where(mask, y / keep, 0.0)

        return weighted_sum_of_ops(
            x,
            weights,
            self.primitives,
            self.features,
            self.stride,
            train,
            self.bn_axis_name,
            transform=skip_dropout,
        )
