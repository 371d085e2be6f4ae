"""The official ENAS final micro network (Pham et al., ICML 2018), as its code builds it.

ENAS retrains a found micro cell in its own network, not in the DARTS evaluation network of
:mod:`jnas.spaces.cells`. :class:`EnasFinalNetwork` is that network, written from the
official code (``melodyguan/enas``, ``src/cifar10/micro_child.py``, the fixed-arc path; the
line numbers below are that file's) with its layer structure and parameter shapes:

* **Settings** (``scripts/cifar10_micro_final.sh``): ``child_num_layers=15``,
  ``child_out_filters=36``, ``child_num_cells=5`` (B), ``child_use_aux_heads``, and the
  ``child_fixed_arc`` of :data:`OFFICIAL_FIXED_ARC` (normal cell, then reduction cell;
  ``connect_controller``, l. 811-817). The network has ``num_layers + 2`` cells; the cells
  ``num_layers // 3`` and ``2 (num_layers // 3) + 1`` are reduction cells that double the
  filters (``pool_layers``, l. 109-110; l. 263-283): 15 normal + 2 reduction cells.
* **Stem** (l. 248-252): a 3x3 conv from 3 to ``3 C`` channels, BN; both inputs of the
  first cell are the stem.
* **A cell** (``_fixed_layer``, l. 403-517), with ``out`` filters: first the inputs are
  calibrated (``_maybe_calibrate_size``, l. 209-238): input 0 at twice the resolution gets
  ReLU and a factorized reduction to ``out``, else (other channel count) ReLU-conv 1x1-BN;
  input 1 gets ReLU-conv 1x1-BN where its channels differ from ``out``. Then input 1 always
  gets one more ReLU-conv 1x1-BN (``layer_base``, l. 416-424). Each node adds two branches
  ``x_id, x_op, y_id, y_op`` (l. 430-512); in a reduction cell the ops on the cell inputs
  have stride 2. Ops: 0, 1: separable conv 3x3, 5x5, i.e. two stacked (ReLU, depthwise,
  pointwise to ``out``, BN), only the first strided (``_fixed_conv`` with
  ``stack_convs=2``, l. 341-367); 2, 3: avg, max pool 3x3 (``SAME``, the average without
  the padding), followed by ReLU-conv 1x1-BN only where the channels differ (never, after
  the calibration); 4: identity, a factorized reduction (no ReLU) at stride 2.
* **Cell output** (``_fixed_combine``, l. 369-401): the concatenation of every state no
  node reads (``used``, l. 426), *cell inputs included*, in order; a state at twice the
  output resolution (an unused input of a reduction cell) is factorized-reduced first (no
  ReLU). There is no 1x1 conv after the concat: the next cell's calibration convs reduce
  the channels. (:mod:`jnas.spaces.enas_micro`'s Genotype concatenates only the unused
  *nodes*; here the concat is recomputed from the edges as the official code does.)
* **Factorized reduction** (l. 115-163): two 1x1 convs to ``out / 2`` on ``x[::2, ::2]``
  and on ``x`` shifted by one pixel (zero-padded bottom-right), concatenated, BN.
* **Auxiliary head** (l. 287-329), after cell ``2 (num_layers // 3) + 2``
  (``aux_head_indices``, l. 112-113), in training only: ReLU, 5x5 average pool at stride 3
  (``VALID``), 1x1 conv to 128, BN, ReLU, a ``hw x hw`` conv to 768 with ``SAME`` padding
  (``hw``: the pooled size, 2 on CIFAR), BN, ReLU, global average pool, a 768 x classes
  weight.
* **Classifier** (l. 331-338): ReLU, global average pool, a ``channels x classes`` weight
  (no bias: ``create_weight``, ``src/common_ops.py`` l. 27-30, and no bias anywhere).
* **BN** (``batch_norm``, ``src/cifar10/image_ops.py`` l. 92-130): trainable offset and
  scale (decay 0.9, epsilon 1e-5: jnas's :func:`jnas.ops.layers.batch_norm`).
* **Counted parameters**: the code prints ``Model has N params`` over the trainable
  variables without the auxiliary head (``_build_train``, l. 721-725), as
  :func:`jnas.spaces.cells.count_params` counts.

Padding follows TensorFlow's ``SAME`` (at stride 2 on an even size: one extra row and
column at the bottom-right), via :func:`jax.lax.padtype_to_pads` and
:func:`jax.lax.reduce_window`. The official classifier weights (no bias) are written as 1x1
convs on the pooled ``1 x 1`` map, so that :func:`jnas.spaces.complexity.count_macs`
counts them. Not built here: dropout before the classifier and drop path (training-time
regularisers without parameters); the initialisation is jnas's (PyTorch's), not the
official ``he_normal``, which changes no shape.

**The count** (``python -m experiments.cells``, the ``enas`` row; :func:`official_stats`):
the official fixed arc at the official settings has 3,894,372 parameters (the figure
``Model has N params`` of the official code), 4,389,220 with the auxiliary head (494,848),
on 32x32 CIFAR-10 images; the paper reports 4.6M.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers
from jnas.ops.primitives import ReLUConvBN
from jnas.spaces.cells import AUX_NAME, NetworkConfigError
from jnas.spaces.enas_micro import EnasMicroSpace
from jnas.spaces.genotype import Genotype, GenotypeTypeError

# scripts/cifar10_micro_final.sh: `fixed_arc` (per node x_id x_op y_id y_op; the normal
# cell's 5 nodes, then the reduction cell's) and the network's settings.
OFFICIAL_FIXED_ARC = (
    "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
)
OFFICIAL_SETTINGS = {"C": 36, "num_layers": 15, "num_classes": 10, "image_shape": (32, 32, 3)}


def fixed_arc_genotype(text: str, num_nodes: int = 5) -> Genotype:
    """The :class:`Genotype` of an official ``--child_fixed_arc`` string (the ENAS micro
    space's :meth:`~jnas.spaces.enas_micro.EnasMicroSpace.decode`; raises its named errors)."""
    arc = np.asarray([int(t) for t in text.split()], np.int32)
    return EnasMicroSpace(num_nodes=num_nodes).decode(arc)


def official_genotype() -> Genotype:
    """The cell of the official final script (:data:`OFFICIAL_FIXED_ARC`)."""
    return fixed_arc_genotype(OFFICIAL_FIXED_ARC)


def official_arcs(genotype: Genotype) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(normal_arc, reduce_arc)`` in the official layout (per node ``x_id, x_op, y_id,
    y_op``) of a member of the ENAS micro space with ``len(genotype.normal) // 2`` nodes.

    Raises:
      ArchitectureError: not a Genotype, or not such a member (the space's named errors).
    """
    if not isinstance(genotype, Genotype):
        raise GenotypeTypeError(
            f"the ENAS final network takes a Genotype, got {type(genotype).__name__}"
        )
    num_nodes = max(1, len(genotype.normal) // 2)
    arc = EnasMicroSpace(num_nodes=num_nodes).encode(genotype).tolist()
    half = 4 * num_nodes
    return tuple(arc[:half]), tuple(arc[half:])


def _pad_same(x: jax.Array, k: int, stride: int) -> jax.Array:
    """``x`` zero-padded as TensorFlow's ``SAME`` pads a ``k x k`` window at ``stride``."""
    pads = jax.lax.padtype_to_pads(x.shape[1:3], (k, k), (stride, stride), "SAME")
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


def _pool_same(x: jax.Array, kind: str, stride: int) -> jax.Array:
    """``tf.layers.{average,max}_pooling2d(x, [3, 3], stride, "SAME")``: the average over the
    window's pixels inside the image."""
    window, strides = (1, 3, 3, 1), (1, stride, stride, 1)
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, "SAME")
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "SAME")
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, "SAME")
    return total / count


def _bn(axis_name, name=None):
    return layers.batch_norm(True, axis_name, name=name)


class FactorizedReduction(nn.Module):
    """``_factorized_reduction`` at stride 2 (l. 115-163): no ReLU (the caller's)."""

    features: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        half = self.features // 2
        path1 = layers.Conv2d(half, (1, 1), name="path1_conv")(x[:, ::2, ::2, :])
        shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
        path2 = layers.Conv2d(half, (1, 1), name="path2_conv")(shifted[:, ::2, ::2, :])
        out = jnp.concatenate([path1, path2], axis=-1)
        return _bn(self.bn_axis_name)(out, use_running_average=not train)


class SepConvStack(nn.Module):
    """``_fixed_conv`` (l. 341-367): ``stack_convs`` times ReLU, ``k x k`` depthwise
    (``SAME``; only the first strides), pointwise to ``features``, BN."""

    features: int
    kernel_size: int
    stride: int
    stack_convs: int = 2
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        k = self.kernel_size
        for conv_id in range(self.stack_convs):
            stride = self.stride if conv_id == 0 else 1
            x = layers.DepthwiseConv2d(k, stride, 0, relu_input=True, name=f"sep_{conv_id}_dw")(
                _pad_same(x, k, stride)
            )
            x = layers.Conv2d(self.features, (1, 1), name=f"sep_{conv_id}_pw")(x)
            x = _bn(self.bn_axis_name, f"sep_{conv_id}_bn")(x, use_running_average=not train)
        return x


class FixedLayer(nn.Module):
    """One cell, ``_fixed_layer`` (l. 403-517): calibration, ``layer_base``, the nodes, the
    concatenation of the unused states (``_fixed_combine``)."""

    arc: tuple[int, ...]
    features: int
    stride: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, s0: jax.Array, s1: jax.Array, train: bool) -> jax.Array:
        out, axis = self.features, self.bn_axis_name
        # _maybe_calibrate_size (l. 209-238).
        if s0.shape[1] != s1.shape[1]:
            if s0.shape[1] != 2 * s1.shape[1]:
                raise NetworkConfigError(
                    f"ENAS final network: a cell's inputs are {s0.shape[1]} and "
                    f"{s1.shape[1]} pixels high; the first must be the second or twice it"
                )
            s0 = FactorizedReduction(out, axis, name="pool_x")(nn.relu(s0), train)
        elif s0.shape[-1] != out:
            s0 = ReLUConvBN(out, 1, bn_axis_name=axis, name="pool_x")(s0, train)
        if s1.shape[-1] != out:
            s1 = ReLUConvBN(out, 1, bn_axis_name=axis, name="pool_y")(s1, train)
        s1 = ReLUConvBN(out, 1, bn_axis_name=axis, name="layer_base")(s1, train)

        states = [s0, s1]
        num_nodes = len(self.arc) // 4
        used = [0] * (num_nodes + 2)
        for b in range(num_nodes):
            node = None
            for j, branch in enumerate(("x", "y")):
                inp, op = self.arc[4 * b + 2 * j], self.arc[4 * b + 2 * j + 1]
                used[inp] += 1
                h = self._op(states[inp], op, self.stride if inp < 2 else 1, train, b, branch)
                node = h if node is None else node + h
            states.append(node)

        # _fixed_combine (l. 369-401): every unused state, the larger ones reduced.
        unused = [i for i in range(num_nodes + 2) if used[i] == 0]
        out_hw = min(states[i].shape[1] for i in unused)
        parts = []
        for i in unused:
            s = states[i]
            if s.shape[1] > out_hw:
                s = FactorizedReduction(out, axis, name=f"calibrate_{i}")(s, train)
            parts.append(s)
        return jnp.concatenate(parts, axis=-1)

    def _op(self, x, op, stride, train, b, branch):
        out, axis, name = self.features, self.bn_axis_name, f"cell_{b}_{branch}"
        if op in (0, 1):
            return SepConvStack(out, (3, 5)[op], stride, bn_axis_name=axis, name=name)(x, train)
        c_in = x.shape[-1]
        if op in (2, 3):
            x = _pool_same(x, "avg" if op == 2 else "max", stride)
        elif stride > 1:  # op 4: identity, or a factorized reduction at stride 2
            x = FactorizedReduction(out, axis, name=f"{name}_reduce")(x, train)
        if c_in != out:  # never after the calibration; kept as the official code has it
            x = ReLUConvBN(out, 1, bn_axis_name=axis, name=f"{name}_conv")(x, train)
        return x


class EnasFinalNetwork(nn.Module):
    """The official ENAS final micro network (see the module docstring).

    Attributes:
      genotype: the cell, a member of the ENAS micro space (:func:`official_genotype`: the
        official final script's).
      C: ``child_out_filters`` (36); doubled at each reduction cell.
      num_layers: ``child_num_layers`` (15); the network has ``num_layers + 2`` cells.
      num_classes: classifier outputs.
      auxiliary: build the auxiliary head (in training only, as the official code).
      bn_axis_name: the pmap axis for synchronised batch statistics.

    ``__call__(x, train)`` returns ``(logits, aux_logits)`` (``None`` without the head), as
    :class:`jnas.spaces.cells.NetworkCIFAR`.
    """

    genotype: Genotype
    C: int = 36
    num_layers: int = 15
    num_classes: int = 10
    auxiliary: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True):
        for field, low in (("C", 2), ("num_layers", 1), ("num_classes", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NetworkConfigError(
                    f"ENAS final network: {field} must be an int >= {low}, got {value!r}"
                )
        if self.C % 2:
            raise NetworkConfigError(
                f"ENAS final network: C must be even (factorized reductions), got {self.C}"
            )
        normal_arc, reduce_arc = official_arcs(self.genotype)
        distance = self.num_layers // 3
        pool_layers = (distance, 2 * distance + 1)
        aux_at = pool_layers[-1] + 1
        axis = self.bn_axis_name

        s = layers.Conv2d(3 * self.C, (3, 3), padding=(1, 1), name="stem_conv")(x)
        s = _bn(axis, "stem_bn")(s, use_running_average=not train)
        s0 = s1 = s
        out, aux_logits = self.C, None
        for layer_id in range(self.num_layers + 2):
            reduction = layer_id in pool_layers
            if reduction:
                out *= 2
            arc = reduce_arc if reduction else normal_arc
            cell = FixedLayer(arc, out, 2 if reduction else 1, axis, name=f"layer_{layer_id}")
            s0, s1 = s1, cell(s0, s1, train)
            if self.auxiliary and train and layer_id == aux_at:
                aux_logits = _AuxHead(self.num_classes, axis, name=AUX_NAME)(s1)
        h = jnp.mean(nn.relu(s1), axis=(1, 2), keepdims=True)
        logits = layers.Conv2d(self.num_classes, (1, 1), name="fc")(h)
        return logits[:, 0, 0, :], aux_logits


class _AuxHead(nn.Module):
    """``aux_head`` (l. 287-329); its BNs always use batch statistics (l. 303, 313)."""

    num_classes: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[1:3]
        if min(h, w) < 5:
            raise NetworkConfigError(
                f"ENAS final network: the auxiliary head's 5x5 pool needs at least 5x5 "
                f"features after cell 2 (num_layers // 3) + 2, got {h}x{w} (32x32 images give "
                "8x8); use larger images or auxiliary=False"
            )
        x = jax.lax.reduce_window(nn.relu(x), 0.0, jax.lax.add, (1, 5, 5, 1), (1, 3, 3, 1), "VALID")
        x = x / 25.0
        x = layers.Conv2d(128, (1, 1), name="proj")(x)
        x = nn.relu(_bn(self.bn_axis_name, "proj_bn")(x, use_running_average=False))
        hw = x.shape[1]
        x = layers.Conv2d(768, (hw, hw), name="avg_pool")(_pad_same(x, hw, 1))
        x = nn.relu(_bn(self.bn_axis_name, "avg_pool_bn")(x, use_running_average=False))
        x = jnp.mean(x, axis=(1, 2), keepdims=True)
        return layers.Conv2d(self.num_classes, (1, 1), name="fc")(x)[:, 0, 0, :]


def official_stats(
    genotype: Genotype | None = None,
    *,
    C: int = OFFICIAL_SETTINGS["C"],
    num_layers: int = OFFICIAL_SETTINGS["num_layers"],
    num_classes: int = OFFICIAL_SETTINGS["num_classes"],
    image_shape: tuple[int, ...] = OFFICIAL_SETTINGS["image_shape"],
) -> dict:
    """Parameters (without and with the auxiliary head) and multiply-adds of the official
    final network of ``genotype`` (default: :func:`official_genotype`), from shapes only
    (``jax.eval_shape`` of ``init``; nothing compiles), in the keys of
    :func:`jnas.spaces.complexity.network_stats` (``layers``: all cells, ``num_layers + 2``).
    """
    from jnas.spaces.cells import abstract_variables, count_params
    from jnas.spaces.complexity import count_macs

    model = EnasFinalNetwork(
        genotype if genotype is not None else official_genotype(),
        C=C,
        num_layers=num_layers,
        num_classes=num_classes,
        auxiliary=True,
    )
    variables = abstract_variables(model, tuple(image_shape))
    return {
        "network": "cifar",
        "C": C,
        "layers": num_layers + 2,
        "params": count_params(variables["params"]),
        "params_with_aux": count_params(variables["params"], auxiliary=True),
        "madds": count_macs(model, tuple(image_shape)),
    }


def official_row(paper_params: float | None = None) -> dict:
    """The ``enas`` row of ``python -m experiments.cells``
    (:func:`jnas.spaces.complexity.published_rows`): the official final network of the
    official fixed arc (:func:`official_stats`), beside the paper's figure ``paper_params``;
    its note gives the count of the cell of the paper's figure (``PUBLISHED["ENAS"]``) in the
    same network."""
    from jnas.spaces.cells import abstract_variables, count_params
    from jnas.spaces.published import PUBLISHED

    stats = official_stats()
    figure_cell = EnasFinalNetwork(PUBLISHED["ENAS"], C=stats["C"])
    figure_params = count_params(
        abstract_variables(figure_cell, OFFICIAL_SETTINGS["image_shape"])["params"]
    )
    note = (
        "ENAS's own final network as its official code builds it (micro_child.py, fixed-arc "
        "path; cifar10_micro_final.sh: 15 normal + 2 reduction cells, 36 filters), for the "
        f"script's fixed_arc (the cell of the paper's figure: {figure_params:,} here); params "
        "is the code's own 'Model has N params'; the published 4.6M is not reproduced"
    )
    return {
        "genotype": "ENAS",
        "shape": "enas",
        **stats,
        "paper_params": paper_params,
        "paper_madds": None,
        "note": note,
    }
