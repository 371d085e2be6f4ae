"""The evaluation networks of cell-based NAS: a fixed genotype stacked into a deep network.

This is the second half of DARTS (Liu et al., ICLR 2019, Sec. 3.2-3.3) and of the papers
that reuse its protocol: the searched cell is retrained from scratch in a larger network.
Both networks follow the DARTS code (``cnn/model.py``) so that parameter counts and
multiply-adds match the published figures exactly:

* :class:`Cell`: ``preprocess0`` is a :class:`FactorizedReduce` when the previous cell
  reduced resolution, else a 1x1 ReLU-conv-BN; ``preprocess1`` a 1x1 ReLU-conv-BN. Each
  intermediate node sums two ops of the genotype (affine batch norm), applied at stride 2
  to the cell inputs of a reduction cell. In training, drop-path zeroes every non-identity
  op's output per example with probability ``p`` and rescales by ``1 / (1 - p)``.
* :class:`NetworkCIFAR`: a 3x3 stem to ``3C`` channels, ``layers`` cells with reductions
  (and doubled channels) at 1/3 and 2/3 depth, an optional auxiliary head after the 2/3
  cell, global average pooling and a linear classifier.
* :class:`NetworkImageNet`: the DARTS ImageNet stem (three stride-2 3x3 convs, 224 -> 28),
  the same cell stack, and the ImageNet auxiliary head.

Call as ``model.apply(variables, images, train=..., drop_path_prob=...,
rngs={"dropout": key})``; it returns ``(logits, logits_aux)`` where ``logits_aux`` is None
unless the model has an auxiliary head and ``train`` is true (as in the DARTS code).
Initialise with ``train=True`` so that the auxiliary head's parameters are created.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.errors import JnasError
from jnas.ops import layers
from jnas.ops.primitives import FactorizedReduce, Identity, ReLUConvBN, make_op
from jnas.spaces.darts import reduction_layers
from jnas.spaces.genotype import (
    Genotype,
    GenotypeRangeError,
    GenotypeTypeError,
)

AUX_NAME = "auxiliary_head"
_SCAN_NAME = re.compile(r"cells_(\d+)_(\d+)$")  # an nn.scan over cells first..last


class NetworkConfigError(ValueError, JnasError):
    """A network that cannot be built as asked (e.g. an auxiliary head on too small a net)."""


def drop_path_scales(
    drop_prob: jax.Array | float,
    key: jax.Array,
    n: int,
    batch: int,
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> jax.Array:
    """``[n, batch]`` drop-path factors: ``Bernoulli(keep) / keep``, one per path and example.

    One random draw for all ``n`` paths of a cell (on CPU, JAX lowers each threefry call to a
    loop of small kernels: one call per path cost ~5 % of the 20-cell DARTS training step).
    Under ``pmap`` (``axis_name`` given) the factors are drawn for the global batch and each
    device takes its slice, so a data-parallel step equals a one-device step.
    """
    keep = 1.0 - jnp.asarray(drop_prob, jnp.float32)
    if axis_name is None:
        mask = jax.random.bernoulli(key, keep, (n, batch))
    else:
        size = jax.lax.axis_size(axis_name)
        full = jax.random.bernoulli(key, keep, (n, size * batch))
        start = jax.lax.axis_index(axis_name) * batch
        mask = jax.lax.dynamic_slice_in_dim(full, start, batch, axis=1)
    return mask.astype(dtype) / keep.astype(dtype)


def drop_path(
    x: jax.Array, drop_prob: jax.Array | float, key: jax.Array, axis_name: str | None = None
) -> jax.Array:
    """Zero whole examples with probability ``drop_prob``, scale the rest by ``1/keep``.

    As the DARTS code's ``drop_path``: ``x / keep_prob * Bernoulli(keep_prob)`` with one draw
    per example (:func:`drop_path_scales` with ``n = 1``; a :class:`Cell` draws all its
    paths' factors at once).

    Args:
      x: ``[B, H, W, C]`` features.
      drop_prob: the drop probability (a Python float or a traced scalar).
      key: PRNG key, the same on all devices.
      axis_name: the pmap axis, or None.

    Returns:
      The masked features, same shape and dtype.
    """
    scale = drop_path_scales(drop_prob, key, 1, x.shape[0], axis_name, x.dtype)[0]
    return x * scale[:, None, None, None]


def _is_zero(p) -> bool:
    return isinstance(p, int | float | np.floating) and float(p) == 0.0


def cell_edges(genotype: Genotype, reduction: bool):
    """The ``(op_name, input_index)`` edges and concatenated states of one cell type."""
    if reduction:
        return genotype.reduce, genotype.reduce_concat
    return genotype.normal, genotype.normal_concat


def check_genotype(genotype: Genotype) -> Genotype:
    """Validate a genotype for the evaluation networks (raises before anything compiles).

    Beyond :meth:`Genotype.validate` (known ops, backward indices), a reduction cell may not
    concatenate its unreduced inputs (states 0 and 1).
    """
    if not isinstance(genotype, Genotype):
        raise GenotypeTypeError(f"expected a Genotype, got {type(genotype).__name__}")
    genotype.validate()
    bad = [i for i in genotype.reduce_concat if i < 2]
    if bad:
        raise GenotypeRangeError(
            f"reduce_concat {list(genotype.reduce_concat)} lists cell input(s) {bad}, which "
            "are not at the reduced resolution; a reduction cell may only concatenate its "
            "intermediate nodes (states >= 2)"
        )
    return genotype


class Cell(nn.Module):
    """One cell of the evaluation network (DARTS ``model.Cell``).

    Node ``j`` (state ``j + 2``) is ``op_2j(state_a) + op_2j+1(state_b)``; in training each
    op's output is drop-path'ed unless the op is an identity. (Computing edges that share
    op and input together, pools once or convs as one ``nn.vmap``, was measured slower on
    CPU: XLA fuses each edge's op into its consumers better.)

    Attributes:
      genotype: the architecture.
      features: the channel count ``C`` of every node; the output has ``len(concat) * C``.
      reduction: a reduction cell (ops on the cell inputs stride 2).
      reduction_prev: the previous cell reduced (``s0`` is at twice the resolution of ``s1``).
      bn_axis_name: the pmap axis over which batch statistics are averaged.
    """

    genotype: Genotype
    features: int
    reduction: bool
    reduction_prev: bool
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, s0, s1, train: bool = True, drop_path_prob: Any = 0.0):
        c, axis = self.features, self.bn_axis_name
        if self.reduction_prev:
            s0 = FactorizedReduce(c, affine=True, bn_axis_name=axis, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(c, 1, 1, 0, affine=True, bn_axis_name=axis, name="preprocess0")(
                s0, train
            )
        s1 = ReLUConvBN(c, 1, 1, 0, affine=True, bn_axis_name=axis, name="preprocess1")(s1, train)
        edges, concat = cell_edges(self.genotype, self.reduction)
        ops = [
            make_op(
                name,
                c,
                2 if self.reduction and index < 2 else 1,
                affine=True,
                bn_axis_name=axis,
                module_name=f"op{k}",
            )
            for k, (name, index) in enumerate(edges)
        ]
        # Drop-path on every op but the identities (as the DARTS code): one draw per cell.
        dropped = [k for k, op in enumerate(ops) if not isinstance(op, Identity)]
        row = {k: i for i, k in enumerate(dropped)}  # op k's row of the drop-path factors
        scales = None
        if train and not _is_zero(drop_path_prob) and row:
            scales = drop_path_scales(
                drop_path_prob, self.make_rng("dropout"), len(row), s1.shape[0], axis, s1.dtype
            )
        states = [s0, s1]
        for node in range(len(edges) // 2):
            total = None
            for k in (2 * node, 2 * node + 1):
                h = ops[k](states[edges[k][1]], train)
                if scales is not None and k in row:
                    h = h * scales[row[k]][:, None, None, None]
                total = h if total is None else total + h
            states.append(total)
        return jnp.concatenate([states[i] for i in concat], axis=-1)


def _aux_check(x, head: str, pool_stride: int, sizes: str, where: str):
    h, w = x.shape[1], x.shape[2]
    pooled = [(n - 5) // pool_stride + 1 if n >= 5 else 0 for n in (h, w)]
    if pooled != [2, 2]:
        raise NetworkConfigError(
            f"{head} needs a {sizes} input (the features after the 2/3-depth reduction cell, "
            f"{where}) so that its 5x5 pool and 2x2 conv end at 1x1; this network gives it "
            f"{h}x{w}. Use larger images or set config.model.auxiliary=False."
        )


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS ``AuxiliaryHeadCIFAR``, for an 8x8 input (32x32 images).

    ReLU, 5x5 average pool at stride 3 (to 2x2), 1x1 conv to 128, BN, ReLU, 2x2 conv to 768,
    BN, ReLU, linear classifier.
    """

    num_classes: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        _aux_check(x, "AuxiliaryHeadCIFAR", 3, "8x8 (up to 10x10)", "8x8 for 32x32 images")
        return _aux_head(x, 3, True, self.num_classes, self.bn_axis_name, train)


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS ``AuxiliaryHeadImageNet``, for the 7x7 features of 224x224 images.

    As the DARTS code: the BN after the 2x2 conv is omitted (a typo kept "for consistency
    with the experiments in the paper"), the pool has stride 2.
    """

    num_classes: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        _aux_check(x, "AuxiliaryHeadImageNet", 2, "7x7 or 8x8", "7x7 for 224x224 images")
        return _aux_head(x, 2, False, self.num_classes, self.bn_axis_name, train)


def _pool_matrix(n: int, k: int, stride: int) -> np.ndarray:
    """``[n_out, n]`` averaging weights of a 1-D ``k``-window, no padding, given stride."""
    n_out = (n - k) // stride + 1
    m = np.zeros((n_out, n), np.float32)
    for i in range(n_out):
        m[i, i * stride : i * stride + k] = 1.0 / k
    return m


def _avg_pool_valid(x: jax.Array, k: int, stride: int) -> jax.Array:
    """``AvgPool2d(k, stride, padding=0)`` as two small matrix products.

    The same values as summing shifted slices, but its gradient is two matrix products
    too, instead of one scatter (pad) of the whole input per window position.
    """
    ph = jnp.asarray(_pool_matrix(x.shape[1], k, stride), x.dtype)
    pw = jnp.asarray(_pool_matrix(x.shape[2], k, stride), x.dtype)
    return jnp.einsum("ih,jw,bhwc->bijc", ph, pw, x)


def _aux_head(x, pool_stride, second_bn, num_classes, axis, train):
    ura = not train
    x = _avg_pool_valid(nn.relu(x), 5, pool_stride)
    x = layers.Conv2d(128, (1, 1), name="conv0")(x)
    x = nn.relu(layers.batch_norm(True, axis, name="bn0")(x, use_running_average=ura))
    x = layers.Conv2d(768, (2, 2), name="conv1")(x)
    if second_bn:
        x = layers.batch_norm(True, axis, name="bn1")(x, use_running_average=ura)
    x = nn.relu(x)
    return layers.Dense(num_classes, name="classifier")(x.reshape(x.shape[0], -1))


class _ScanCell(nn.Module):
    """A normal cell as the body of ``nn.scan``: carry ``(s0, s1)`` -> ``(s1, cell(s0, s1))``."""

    genotype: Genotype
    features: int
    bn_axis_name: str | None
    train: bool

    @nn.compact
    def __call__(self, carry, drop_path_prob):
        s0, s1 = carry
        cell = Cell(self.genotype, self.features, False, False, self.bn_axis_name, name="cell")
        return (s1, cell(s0, s1, self.train, drop_path_prob)), None


def scan_groups(
    layers: int, scan: bool = True, same_multiplier: bool = True
) -> list[tuple[int, int]]:
    """Runs ``[first, last)`` of consecutive cells that share their input and output shapes.

    Cell ``i >= 2`` qualifies when neither it nor cell ``i - 1`` is a reduction cell, and
    (unless both cell types concatenate as many states, ``same_multiplier``) neither is cell
    ``i - 2``: its inputs (the outputs of cells ``i - 2`` and ``i - 1``) then have one shape,
    the same as its output. Such a run is computed by one ``nn.scan`` (parameters stacked on
    a leading axis), so XLA compiles one cell for the whole run.
    """
    if not scan:
        return []
    red = set(reduction_layers(layers))
    ok = [
        i >= 2 and not {i, i - 1} & red and (same_multiplier or (i - 2) not in red)
        for i in range(layers)
    ]
    groups, i = [], 0
    while i < layers:
        if ok[i]:
            j = i
            while j < layers and ok[j]:
                j += 1
            if j - i >= 2:
                groups.append((i, j))
            i = j
        else:
            i += 1
    return groups


def scan_multiplicity(path: tuple[str, ...]) -> int:
    """How many cells a module at ``path`` stands for (>1 inside an ``nn.scan`` of cells)."""
    for name in path:
        match = _SCAN_NAME.match(name)
        if match:
            return int(match.group(2)) - int(match.group(1)) + 1
    return 1


def _cell_stack(mod, s0, s1, c, reduction_prev, train, drop_path_prob, aux_cls):
    """The cells of both networks; returns the last state and the auxiliary logits."""
    aux_at = 2 * mod.layers // 3
    reductions = reduction_layers(mod.layers)
    g = mod.genotype
    same = len(g.normal_concat) == len(g.reduce_concat)
    groups = dict(scan_groups(mod.layers, mod.scan_cells, same))
    logits_aux = None
    i = 0
    while i < mod.layers:
        if i in groups:  # a run of identical normal cells (never holds aux_at, a reduction)
            last = groups[i]
            scan = nn.scan(
                _ScanCell,
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=nn.broadcast,
                length=last - i,
            )
            body = scan(mod.genotype, c, mod.bn_axis_name, train, name=f"cells_{i}_{last - 1}")
            (s0, s1), _ = body((s0, s1), drop_path_prob)
            reduction_prev, i = False, last
            continue
        reduction = i in reductions
        if reduction:
            c *= 2
        cell = Cell(mod.genotype, c, reduction, reduction_prev, mod.bn_axis_name, name=f"cell_{i}")
        s0, s1 = s1, cell(s0, s1, train, drop_path_prob)
        reduction_prev = reduction
        if i == aux_at and mod.auxiliary and train:
            head = aux_cls(mod.num_classes, mod.bn_axis_name, name=AUX_NAME)
            logits_aux = head(s1, train)
        i += 1
    return s1, logits_aux


def _check_network(mod):
    check_genotype(mod.genotype)
    if mod.layers < 3:
        raise NetworkConfigError(
            f"the network needs at least 3 cells (two of them reduction cells), got {mod.layers}"
        )
    if mod.C % 2:
        raise NetworkConfigError(f"C must be even (factorized reductions), got {mod.C}")


class NetworkCIFAR(nn.Module):
    """The DARTS CIFAR evaluation network (``model.NetworkCIFAR``).

    Attributes:
      genotype: the cell architecture.
      C: initial channels (36 in DARTS); doubled at each reduction cell.
      num_classes: classifier outputs.
      layers: number of cells (20 in DARTS).
      auxiliary: add the auxiliary head after cell ``2 * layers // 3``.
      stem_multiplier: the stem has ``stem_multiplier * C`` channels.
      scan_cells: compute runs of identical normal cells with one ``nn.scan`` (see
        :func:`scan_groups`): the same network and parameter count, parameters stacked per
        run, a smaller program for XLA to compile.
      bn_axis_name: the pmap axis for synchronised batch statistics.
    """

    genotype: Genotype
    C: int = 36
    num_classes: int = 10
    layers: int = 20
    auxiliary: bool = False
    stem_multiplier: int = 3
    scan_cells: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True, drop_path_prob: Any = 0.0):
        _check_network(self)
        c_stem = self.stem_multiplier * self.C
        s = layers.Conv2d(c_stem, (3, 3), padding=(1, 1), name="stem_conv")(x)
        s = layers.batch_norm(True, self.bn_axis_name, name="stem_bn")(
            s, use_running_average=not train
        )
        out, logits_aux = _cell_stack(
            self, s, s, self.C, False, train, drop_path_prob, AuxiliaryHeadCIFAR
        )
        out = jnp.mean(out, axis=(1, 2))
        return layers.Dense(self.num_classes, name="classifier")(out), logits_aux


class NetworkImageNet(nn.Module):
    """The DARTS ImageNet evaluation network, mobile setting (``model.NetworkImageNet``).

    Stem: 3x3 conv stride 2 to ``C/2``, BN, ReLU, 3x3 conv stride 2 to ``C``, BN (``s0``,
    56x56 for 224x224 images), then ReLU, 3x3 conv stride 2, BN (``s1``, 28x28); the first
    cell therefore sees a "reduced previous" input. After the cells: global average pooling
    (``AvgPool2d(7)`` at 224x224) and a linear classifier.

    Attributes:
      genotype: the cell architecture.
      C: initial channels (48 in DARTS).
      num_classes: classifier outputs (1000).
      layers: number of cells (14 in DARTS).
      auxiliary: add the ImageNet auxiliary head after cell ``2 * layers // 3``.
      scan_cells: as for :class:`NetworkCIFAR`.
      bn_axis_name: the pmap axis for synchronised batch statistics.
    """

    genotype: Genotype
    C: int = 48
    num_classes: int = 1000
    layers: int = 14
    auxiliary: bool = False
    scan_cells: bool = True
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True, drop_path_prob: Any = 0.0):
        _check_network(self)
        c, axis, ura = self.C, self.bn_axis_name, not train
        s = layers.Conv2d(c // 2, (3, 3), (2, 2), (1, 1), name="stem0_conv0")(x)
        s = nn.relu(layers.batch_norm(True, axis, name="stem0_bn0")(s, use_running_average=ura))
        s = layers.Conv2d(c, (3, 3), (2, 2), (1, 1), name="stem0_conv1")(s)
        s0 = layers.batch_norm(True, axis, name="stem0_bn1")(s, use_running_average=ura)
        s = layers.Conv2d(c, (3, 3), (2, 2), (1, 1), name="stem1_conv")(nn.relu(s0))
        s1 = layers.batch_norm(True, axis, name="stem1_bn")(s, use_running_average=ura)
        out, logits_aux = _cell_stack(
            self, s0, s1, c, True, train, drop_path_prob, AuxiliaryHeadImageNet
        )
        out = jnp.mean(out, axis=(1, 2))
        return layers.Dense(self.num_classes, name="classifier")(out), logits_aux


NETWORKS = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}


def build_network(
    network: str,
    genotype: Genotype,
    *,
    C: int,
    layers: int,
    num_classes: int,
    auxiliary: bool,
    scan_cells: bool = True,
    bn_axis_name: str | None = None,
) -> nn.Module:
    """The evaluation network ``network`` (``"cifar"`` or ``"imagenet"``) for ``genotype``.

    Raises:
      NetworkConfigError: for an unknown network name or an unbuildable shape.
      MalformedGenotypeError / UnknownOpError: for a bad genotype (checked here, before any
        tracing or compilation).
    """
    if network not in NETWORKS:
        raise NetworkConfigError(
            f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}"
        )
    check_genotype(genotype)
    return NETWORKS[network](
        genotype=genotype,
        C=C,
        num_classes=num_classes,
        layers=layers,
        auxiliary=auxiliary,
        scan_cells=scan_cells,
        bn_axis_name=bn_axis_name,
    )


def abstract_variables(model: nn.Module, image_shape: tuple[int, ...], batch: int = 2):
    """The model's variables as shapes only (``jax.eval_shape``: traces, never compiles).

    Building the shapes runs every shape check of the network (auxiliary head size,
    factorized reductions), so configuration errors surface here before any compilation.
    """
    x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
    key = jax.random.key(0)
    return jax.eval_shape(lambda k, im: model.init(k, im, train=True), key, x)


def count_params(params, *, auxiliary: bool = False) -> int:
    """Trainable parameters, as the DARTS code counts them (without the auxiliary head).

    Args:
      params: the ``params`` collection (arrays or shape structs).
      auxiliary: include the auxiliary head.

    Returns:
      The number of scalars.
    """
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [getattr(p, "key", getattr(p, "name", "")) for p in path]
        if not auxiliary and AUX_NAME in names:
            continue
        total += int(np.prod(leaf.shape))
    return total
