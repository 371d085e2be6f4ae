"""The ENAS micro (cell) search space and its shared-weight supergraph (Pham et al., ICML 2018,
Sec. 2.3; the official code ``melodyguan/enas``, ``src/cifar10/micro_child.py`` and
``micro_controller.py``).

A cell (normal, or reduction) has ``num_nodes`` (B = 5 in the paper) intermediate nodes; node
``b`` adds two branches, each of which picks an input among the two previous cells' outputs
and the earlier nodes (0 = the cell before the previous one, 1 = the previous cell, 2 + j =
node j) and applies one op of :data:`ENAS_MICRO_OPS` to it. The nodes no node uses are
concatenated as the cell's output (the official ``_fixed_combine``).

**Decisions** (:attr:`EnasMicroSpace.spec`): the normal cell, then the reduction cell; per
node ``b``: ``"<cell>/node<b>/input_a"`` (``0..b+1``), ``"<cell>/node<b>/op_a"``,
``"<cell>/node<b>/input_b"``, ``"<cell>/node<b>/op_b"``: the official controller's order
(``arc[4 b .. 4 b + 3] = x_id, x_op, y_id, y_op``); ``spec.length = 8 B``.

**Architecture object and text**: a DARTS :class:`~jnas.spaces.genotype.Genotype` (two
``(op, input)`` edges per node, the unused nodes as ``*_concat``, ascending), written as
``str(genotype)``; the ENAS cell of :mod:`jnas.spaces.published` is a member, and a found
cell retrains with ``python -m experiments.train --config.genotype='<text>'``. Only
intermediate nodes are concatenated: the official code also concatenates an unused *cell
input* (factorized-reduced in a reduction cell), which the DARTS evaluation network cannot
build for a reduction cell; here an unused cell input is simply dropped.

**The standalone network** (:meth:`EnasMicroSpace.network`): the DARTS evaluation network
(:class:`jnas.spaces.cells.NetworkCIFAR`: 3x3 stem to ``3C``, ``layers`` cells with
reductions at 1/3 and 2/3 depth, ReLU-conv-BN 1x1 (or a factorized reduction) on each cell
input, ops at stride 2 on a reduction cell's inputs, global pooling, a linear classifier).
Its ops are the DARTS ones: ``sep_conv_kxk`` is (ReLU, depthwise, pointwise, BN) twice, as
the official ``_enas_conv``; pools have no BN; ``skip_connect`` is the identity, or a
factorized reduction at stride 2.

**The supergraph** (:class:`EnasMicroSupergraph`, :meth:`EnasMicroSpace.supergraph`): the
same macro-structure, in which every cell holds, per node and branch, one parameter set per
op *and per input* (the official ``_enas_conv`` keeps ``w_depth``, ``w_point`` and the BN
``scale``/``offset`` as ``[num_possible_inputs, ...]`` arrays indexed by the chosen input,
``w[prev_cell]``; we follow it). A cell's variables for op ``o`` are one stack with leading
axes ``[node, branch, input]``; the child's node ``b``, branch ``j`` reading input ``i``
with op ``o`` uses ``o[b, j, i]`` (a reduction cell's skip connection has variables, a
factorized reduction, for inputs 0 and 1 only). The nodes are computed by one
``lax.scan`` (one compiled node for the whole cell), so every node's stack has ``B + 1``
input rows: node ``b`` uses ``b + 2`` of them, the others never get a gradient (about 1.5x
the official code's op parameters at B = 5; 8.1M parameters for the default supergraph,
C = 20 and 8 cells). In a node, each branch picks its input from the stacked candidate
states with the traced index (``dynamic_index``) and its op with ``lax.switch`` on the
traced op index: XLA compiles a ``conditional`` that runs only the chosen op, forward and
backward. These switches are outside any ``vmap`` (under ``vmap`` with a batched index a
switch would become a select over every op). The cell output is computed at a fixed shape:
the ``B`` nodes concatenated, each multiplied by 1 if no node uses it, else 0; the next
cell's 1x1 preprocessing (and the classifier) thus sees only the unused nodes, as the
official ``_enas_layer`` does with its ``final_conv`` whose weight rows it gathers for the
unused nodes. :meth:`EnasMicroSpace.supergraph_variables_to_network` copies a child's
weights (those rows, the chosen ops' rows) into the standalone network's variables, and
the two compute the same function. Initialisation runs no op (only the initializers, one
compiled program per op and width): ``jax.jit(model.init)`` compiles in about half the
time of an un-jitted ``lazy_init`` (default supergraph, CPU: 12 s against 21 s).

Differences from the official search network, all so that a child *is* the network that
retrains: the reduction cell strides its ops on the cell inputs (the official search cell
factorized-reduces its input first, then runs stride-1 ops); each cell input gets the
DARTS 1x1 preprocessing (the official code: a ``calibrate`` conv where the channels differ,
and ``final_conv`` on the concat); no auxiliary head, no dropout before the classifier.

**Batch norm**: the official search network uses batch statistics everywhere, also for the
controller's reward on validation batches (``_model`` forces ``is_training=True`` when no
architecture is fixed; its ``_enas_conv`` BN keeps no running averages). Here
``train=True`` uses batch statistics and updates running averages (per op and input row:
only the chosen row), ``train=False`` uses the running averages; a search following the
official code computes its reward with ``train=True``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers
from jnas.ops.primitives import FactorizedReduce, ReLUConvBN, make_op
from jnas.spaces import cells
from jnas.spaces.base import SPACES, Fidelity, SharedWeightSpace
from jnas.spaces.darts import reduction_layers
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.spaces.genotype import (
    Genotype,
    GenotypeRangeError,
    GenotypeTypeError,
    UnknownGenotypeOpError,
)
from jnas.spaces.text import echo

# The official op order (micro_child.py ``_enas_cell``: out = [conv 3x3, conv 5x5, avg pool,
# max pool, x]; ``_fixed_layer``: x_op 0, 1 = sep conv 3, 5; 2 = avg pool; 3 = max pool;
# 4 = identity), in jnas's op names.
ENAS_MICRO_OPS: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
)
CELL_TYPES = ("normal", "reduce")
BRANCHES = ("a", "b")


def unused_nodes(edges, num_nodes: int) -> tuple[int, ...]:
    """The states (``2 .. num_nodes + 1``) of the nodes no edge of ``edges`` reads."""
    used = {int(i) for _, i in edges}
    return tuple(s for s in range(2, num_nodes + 2) if s not in used)


@SPACES.register("enas_micro")
@dataclasses.dataclass(frozen=True)
class EnasMicroSpace(SharedWeightSpace):
    """The ENAS micro space (see the module docstring).

    Attributes:
      num_nodes: intermediate nodes per cell (B; 5 in the paper).
      C: the initial channels of the supergraph and of :meth:`network` (the official
        search: ``child_out_filters=20``).
      layers: the cells of both (the official search: 6 normal cells and 2 reduction
        cells, i.e. 8, with the reductions at cells 2 and 5, as DARTS places them).
      stem_multiplier: the stem has ``stem_multiplier * C`` channels (3 in both codes).
      scan_cells: :meth:`network` computes runs of normal cells with one ``nn.scan``
        (:class:`jnas.spaces.cells.NetworkCIFAR`).
    """

    num_nodes: int = 5
    C: int = 20
    layers: int = 8
    stem_multiplier: int = 3
    scan_cells: bool = True

    name: ClassVar[str] = "enas_micro"
    ops: ClassVar[tuple[str, ...]] = ENAS_MICRO_OPS

    def __post_init__(self):
        for field, low in (("num_nodes", 1), ("C", 2), ("layers", 3), ("stem_multiplier", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(
                    f"the ENAS micro space's {field} must be an int >= {low}, got {value!r}"
                )
        if self.C % 2:
            raise ValueError(
                f"the ENAS micro space's C must be even (factorized reductions), got {self.C}"
            )

    # -- decisions ---------------------------------------------------------------------

    @property
    def spec(self) -> DecisionSpec:
        decisions = []
        for t in CELL_TYPES:
            for b in range(self.num_nodes):
                for br in BRANCHES:
                    decisions.append(Categorical(f"{t}/node{b}/input_{br}", tuple(range(b + 2))))
                    decisions.append(Categorical(f"{t}/node{b}/op_{br}", ENAS_MICRO_OPS))
        return DecisionSpec(tuple(decisions))

    def decode(self, arch) -> Genotype:
        """int32 vector -> :class:`Genotype` (a member Genotype is returned as it is)."""
        if isinstance(arch, Genotype):
            self.encode(arch)
            return arch
        a = self.spec.validate(arch).tolist()
        half = 4 * self.num_nodes
        cells = {}
        for c, t in enumerate(CELL_TYPES):
            seq = a[c * half : (c + 1) * half]
            cells[t] = tuple((ENAS_MICRO_OPS[seq[p + 1]], seq[p]) for p in range(0, half, 2))
        return Genotype(
            normal=cells["normal"],
            normal_concat=unused_nodes(cells["normal"], self.num_nodes),
            reduce=cells["reduce"],
            reduce_concat=unused_nodes(cells["reduce"], self.num_nodes),
        )

    def encode(self, obj) -> np.ndarray:
        """A member :class:`Genotype` -> int32 vector ``[spec.length]``.

        Raises:
          GenotypeTypeError: not a Genotype (an ``ArchitectureTypeError``).
          GenotypeRangeError: a cell without exactly two edges per node for
            :attr:`num_nodes` nodes, an input that is not an earlier state, a concat other
            than the unused nodes in ascending order (an ``ArchitectureRangeError``).
          UnknownGenotypeOpError: an op not in :data:`ENAS_MICRO_OPS` (an
            ``UnknownChoiceError``).
        """
        if not isinstance(obj, Genotype):
            raise GenotypeTypeError(
                f"an ENAS micro architecture is a Genotype, got {type(obj).__name__} {echo(obj)}"
            )
        out = []
        for t in CELL_TYPES:
            edges, concat = getattr(obj, t), tuple(getattr(obj, f"{t}_concat"))
            if len(edges) != 2 * self.num_nodes:
                raise GenotypeRangeError(
                    f"{t} cell has {len(edges)} edges ({len(edges) / 2:g} nodes); this space "
                    f"has {self.num_nodes} nodes of 2 edges each ({2 * self.num_nodes} edges)"
                )
            for k, (op, i) in enumerate(edges):
                b, br = divmod(k, 2)
                if op not in ENAS_MICRO_OPS:
                    raise UnknownGenotypeOpError(
                        f"{t} cell, node {b}, branch {BRANCHES[br]}: op {echo(op)} is not an "
                        f"ENAS micro op ({', '.join(ENAS_MICRO_OPS)})"
                    )
                if not 0 <= i < b + 2:
                    raise GenotypeRangeError(
                        f"{t} cell, node {b}, branch {BRANCHES[br]}: input index {i} must be "
                        f"in [0, {b + 1}] (the two cell inputs or an earlier node)"
                    )
                out += [int(i), ENAS_MICRO_OPS.index(op)]
            expected = unused_nodes(edges, self.num_nodes)
            if concat != expected:
                raise GenotypeRangeError(
                    f"{t}_concat {list(concat)}: an ENAS cell concatenates the nodes no node "
                    f"uses, in ascending order: {list(expected)}"
                )
        return np.asarray(out, np.int32)

    def to_text(self, arch) -> str:
        """The genotype text (``str(Genotype)``)."""
        return str(self.decode(arch))

    def parse(self, text: str) -> np.ndarray:
        """Genotype text -> int32 vector; raises a ``MalformedGenotypeError`` subclass (an
        ``ArchitectureError``) naming the problem: strict as :meth:`Genotype.parse`, then a
        member of this space (:meth:`encode`)."""
        return self.encode(Genotype.parse(text))

    def write_pictures(self, arch, directory: str) -> list[str]:
        """PNG and SVG pictures of the normal and reduction cells, drawn as the DARTS cells
        (:func:`jnas.spaces.draw.write_cell_pictures`); returns the paths."""
        from jnas.spaces.draw import write_cell_pictures  # matplotlib / graphviz

        return write_cell_pictures(self.decode(arch), directory)

    # -- networks ----------------------------------------------------------------------

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None, **options):
        """The standalone network of ``arch`` (vector or member Genotype): the DARTS
        evaluation network (:class:`EnasMicroNetwork`, logits only) with :attr:`C` initial
        channels (times ``fidelity.width``, rounded to an even count), :attr:`layers` cells
        and :attr:`stem_multiplier`; ``options`` override its fields (``scan_cells``,
        ``bn_axis_name``, ...).

        Raises:
          ArchitectureError: ``arch`` is not a member.
          NetworkConfigError: a network that cannot be built (e.g. an odd ``C``).
        """
        genotype = self.decode(arch)
        width = 1.0 if fidelity is None else float(fidelity.width)
        kw = dict(
            C=max(2, 2 * round(self.C * width / 2)),
            layers=self.layers,
            num_classes=int(num_classes),
            stem_multiplier=self.stem_multiplier,
            scan_cells=self.scan_cells,
        )
        kw.update(options)
        if kw.pop("auxiliary", False):
            raise cells.NetworkConfigError(
                "the ENAS micro space's network has no auxiliary head (retrain with "
                "experiments.train for one)"
            )
        net = EnasMicroNetwork(genotype=cells.check_genotype(genotype), **kw)
        if net.layers < 3 or net.C % 2:
            raise cells.NetworkConfigError(
                f"the network needs C even and at least 3 cells, got C={net.C}, layers={net.layers}"
            )
        return net

    def supergraph(self, *, num_classes: int, **options) -> EnasMicroSupergraph:
        """The shared-weight supergraph; ``options`` override its fields (``C``, ``layers``,
        ``bn_axis_name``, ...)."""
        kw = dict(
            C=self.C,
            num_classes=int(num_classes),
            layers=self.layers,
            num_nodes=self.num_nodes,
            stem_multiplier=self.stem_multiplier,
        )
        kw.update(options)
        return EnasMicroSupergraph(**kw)

    def supergraph_variables_to_network(
        self, arch, supergraph_variables, *, scan_cells: bool | None = None
    ) -> dict:
        """The variables of the standalone network of ``arch`` holding the shared weights
        that the child ``arch`` uses.

        ``network(arch, num_classes=n, C=c, layers=l).apply(result, x, train=False)``
        equals ``supergraph(num_classes=n, C=c, layers=l).apply(supergraph_variables, x,
        arch, train=False)`` (and so do their ``train=True`` outputs on one batch). The
        sizes are read from the variables; ``scan_cells`` (default :attr:`scan_cells`) says
        whether the network stacks runs of normal cells (``nn.scan``), as ``network`` does.

        Args:
          arch: an int32 vector of this space (or a member Genotype).
          supergraph_variables: ``{"params": ..., "batch_stats": ...}`` of the supergraph.

        Returns:
          ``{"params": ..., "batch_stats": ...}`` (host or device arrays, not copied where
          a leaf is taken whole).
        """
        genotype = self.decode(arch)
        vec = self.encode(genotype)
        scan = self.scan_cells if scan_cells is None else bool(scan_cells)
        params = _to_dict(supergraph_variables["params"])
        stats = _to_dict(supergraph_variables.get("batch_stats", {}))
        n_cells = sum(1 for k in params if k.startswith("cell_"))
        reductions = reduction_layers(n_cells)
        concat = {t: getattr(genotype, f"{t}_concat") for t in CELL_TYPES}
        out_p = {k: params[k] for k in ("stem_conv", "stem_bn")}
        out_s = {"stem_bn": stats["stem_bn"]}

        # The concat of the state each cell reads (None: the stem, taken whole).
        produced: list[Any] = []
        for i in range(n_cells):
            t = "reduce" if i in reductions else "normal"
            reads = [produced[i - 2] if i >= 2 else None, produced[i - 1] if i >= 1 else None]
            p, s = params[f"cell_{i}"], stats.get(f"cell_{i}", {})
            cp, cs = {}, {}
            for k, src in enumerate(reads):
                name = f"preprocess{k}"
                cp[name] = _select_input_rows(p[name], src, self.num_nodes)
                cs[name] = s[name]
            seq = vec[CELL_TYPES.index(t) * 4 * self.num_nodes :][: 4 * self.num_nodes]
            for b in range(self.num_nodes):
                for j in range(len(BRANCHES)):
                    inp, op = int(seq[4 * b + 2 * j]), int(seq[4 * b + 2 * j + 1])
                    key, at = ENAS_MICRO_OPS[op], (b, j, inp)
                    # The op has variables on this input where its stacks have the row (a
                    # skip connection only on a reduction cell's inputs 0 and 1).
                    for tree, out in ((p, cp), (s, cs)):
                        if key in tree and inp < jax.tree.leaves(tree[key])[0].shape[2]:
                            out[f"op{2 * b + j}"] = jax.tree.map(lambda a, at=at: a[at], tree[key])
            out_p[f"cell_{i}"], out_s[f"cell_{i}"] = cp, cs
            produced.append(concat[t])
        cls = params["classifier"]
        out_p["classifier"] = {
            "kernel": _rows(cls["kernel"], produced[-1], self.num_nodes, axis=0),
            "bias": cls["bias"],
        }
        same = len(concat["normal"]) == len(concat["reduce"])
        for first, last in cells.scan_groups(n_cells, scan, same):
            for tree in (out_p, out_s):
                run = [tree.pop(f"cell_{i}") for i in range(first, last)]
                tree[f"cells_{first}_{last - 1}"] = {
                    "cell": jax.tree.map(lambda *a: jnp.stack(a), *run)
                }
        return {"params": out_p, "batch_stats": out_s}


def _to_dict(tree) -> dict:
    """A (Frozen)Dict tree as plain nested dicts."""
    if hasattr(tree, "items"):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree


def _rows(kernel, concat, num_nodes: int, axis: int):
    """The rows of ``kernel`` along ``axis`` that read the nodes ``concat`` (states >= 2) of
    a fixed-shape supergraph cell output (``num_nodes`` blocks of equal width)."""
    if concat is None:
        return kernel
    width = kernel.shape[axis] // num_nodes
    idx = np.concatenate([np.arange((s - 2) * width, (s - 1) * width) for s in concat])
    return jnp.take(kernel, idx, axis=axis)


def _select_input_rows(tree: dict, concat, num_nodes: int) -> dict:
    """A preprocessing module's params with its convs' input rows cut to ``concat``."""
    out = {}
    for name, sub in tree.items():
        if name.startswith("Conv2d"):
            out[name] = {"kernel": _rows(sub["kernel"], concat, num_nodes, axis=2)}
        else:
            out[name] = sub
    return out


class EnasMicroNetwork(cells.NetworkCIFAR):
    """The standalone network of an ENAS micro cell: :class:`jnas.spaces.cells.NetworkCIFAR`
    (same fields and variables; no auxiliary head) called as the spaces' networks are,
    ``apply(variables, images, train=False)``, returning the logits only."""

    def __call__(self, x: jax.Array, train: bool = False, drop_path_prob: Any = 0.0):
        return super().__call__(x, train, drop_path_prob)[0]


class EnasMicroSupergraph(nn.Module):
    """The ENAS micro shared-weight supergraph (see the module docstring).

    Call as ``apply(variables, images, arch, train=...)`` (``mutable=["batch_stats"]``
    when ``train``) with ``arch`` the int32 vector of :attr:`EnasMicroSpace.spec` (traced:
    one compiled program serves every architecture). Returns the logits.

    Attributes:
      C: initial channels; doubled at each reduction cell.
      num_classes: classifier outputs.
      layers: cells, with reductions at 1/3 and 2/3 depth.
      num_nodes: intermediate nodes per cell.
      stem_multiplier: the stem's channels are ``stem_multiplier * C``.
      bn_axis_name: the pmap axis over which batch statistics are averaged.
    """

    C: int = 20
    num_classes: int = 10
    layers: int = 8
    num_nodes: int = 5
    stem_multiplier: int = 3
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = True) -> jax.Array:
        arch = jnp.asarray(arch, jnp.int32)
        half = 4 * self.num_nodes
        if arch.shape != (2 * half,):
            raise ValueError(
                f"arch must be an int vector of length {2 * half} (the space's spec), got "
                f"shape {arch.shape}"
            )
        c = self.C
        s = layers.Conv2d(self.stem_multiplier * c, (3, 3), padding=(1, 1), name="stem_conv")(x)
        s = layers.batch_norm(True, self.bn_axis_name, name="stem_bn")(
            s, use_running_average=not train
        )
        s0 = s1 = s
        reduction_prev = False
        reductions = reduction_layers(self.layers)
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c *= 2
            cell_arch = arch[half:] if reduction else arch[:half]
            cell = _SupergraphCell(
                c, reduction, reduction_prev, self.num_nodes, self.bn_axis_name, name=f"cell_{i}"
            )
            s0, s1 = s1, cell(s0, s1, cell_arch, train)
            reduction_prev = reduction
        out = jnp.mean(s1, axis=(1, 2))
        return layers.Dense(self.num_classes, name="classifier")(out)


class _SupergraphCell(nn.Module):
    """One supergraph cell: the DARTS cell's preprocessing, ``num_nodes`` nodes of two
    branches computed by one ``lax.scan`` over the nodes, and the unused nodes as a
    fixed-shape, zero-masked concat of all nodes.

    Variables (besides ``preprocess0`` / ``preprocess1``): per op that has any, ``<op>``
    in ``params`` and ``batch_stats``: the op module's variables with leading axes
    ``[num_nodes, 2 (branch a, b), rows]``, a row per input the branch can read (``0 ..
    num_nodes``; node ``b`` uses rows ``0..b+1``). Node ``b``, branch ``j`` of a child that
    reads input ``i`` with op ``o`` uses ``variables[o][b, j, i]``. In a reduction cell the
    ops on rows 0 and 1 (the cell inputs) stride 2, those on the nodes do not; the skip
    connection has variables (a factorized reduction) on rows 0 and 1 only (``rows = 2``).
    """

    features: int
    reduction: bool
    reduction_prev: bool
    num_nodes: int
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, s0, s1, arch, train: bool):
        c, axis, n_nodes = self.features, self.bn_axis_name, self.num_nodes
        if self.reduction_prev:
            s0 = FactorizedReduce(c, affine=True, bn_axis_name=axis, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(c, 1, 1, 0, affine=True, bn_axis_name=axis, name="preprocess0")(
                s0, train
            )
        s1 = ReLUConvBN(c, 1, 1, 0, affine=True, bn_axis_name=axis, name="preprocess1")(s1, train)
        inputs = jnp.stack([s0, s1])
        node_like = jax.ShapeDtypeStruct(
            (s1.shape[0], s1.shape[1] // 2, s1.shape[2] // 2, c)
            if self.reduction
            else (*s1.shape[:3], c),
            s1.dtype,
        )
        # The groups of candidate inputs: (first state, stride, input shape, read from the
        # buffer of states rather than from the cell inputs).
        if self.reduction:
            groups = [(0, 2, s1, False)] + ([(2, 1, node_like, True)] if n_nodes > 1 else [])
        else:
            groups = [(0, 1, s1, True)]
        branches, params, stats = [[] for _ in groups], {}, {}
        for name in ENAS_MICRO_OPS:
            modules = [
                make_op(name, c, stride, affine=True, bn_axis_name=axis).clone(parent=None)
                for _, stride, _, _ in groups
            ]
            likes = [jax.ShapeDtypeStruct(like.shape, like.dtype) for _, _, like, _ in groups]
            for collection, store in (("params", params), ("batch_stats", stats)):
                owners = [
                    (g, m, like)
                    for g, m, like in zip(groups, modules, likes, strict=True)
                    if collection in _op_shapes(m, like)
                ]
                if not owners:
                    continue
                # One stack per op, a row per input it can read (all of them, or a reduction
                # cell's inputs 0, 1 only, for the skip connection's factorized reduction);
                # its stride-2 rows (cell inputs) and stride-1 rows (nodes) have one shape.
                trees = {str(_op_shapes(m, like)[collection]) for _, m, like in owners}
                if len(trees) != 1:
                    raise AssertionError(f"{name}: variables differ by stride: {trees}")
                rows = max(n_nodes + 1 if g[3] else 2 for g, _, _ in owners)
                _, module, like = owners[-1]  # the stride-1 module where there is one
                shape = (n_nodes, len(BRANCHES), rows)
                if collection == "params":
                    store[name] = self.param(name, _stacked_init(module, like, shape, collection))
                else:  # the same program; its running averages do not depend on the key
                    store[name] = self.variable(
                        collection,
                        name,
                        lambda m=module, like=like, shape=shape, c=collection: _stacked_init(
                            m, like, shape, c
                        )(self.make_rng("params")),
                    )
            for g, ((first, _, _, from_buf), module) in enumerate(
                zip(groups, modules, strict=True)
            ):
                branch = _branch_fn(
                    module, name, first, from_buf, name in params, name in stats, train
                )
                branches[g].append(branch)
        # Branch g * len(ops) + k: op k on the inputs of group g (see `_nodes`).
        branches = [b for group in branches for b in group]
        if self.is_initializing():
            # Only the variables matter here: no op runs (a smaller program to trace).
            nodes = jnp.zeros((n_nodes, *node_like.shape), node_like.dtype)
        else:
            nodes, new_stats = self._nodes(inputs, arch, branches, params, stats, node_like, train)
            if train:
                for k, v in stats.items():
                    v.value = new_stats[k]
        # used[s]: some branch of this cell reads state s (ENAS's `used`, a traced vector).
        reads = arch.reshape(n_nodes, 4)[:, 0::2].reshape(-1)
        used = jnp.zeros((n_nodes + 2,), bool).at[reads].set(True)
        keep = jnp.logical_not(used[2:]).astype(nodes.dtype)
        nodes = nodes * keep[:, None, None, None, None]
        # [B, N, H, W, C] -> [N, H, W, B * C]: node j's channels at [j C, (j + 1) C).
        return jnp.moveaxis(nodes, 0, 3).reshape(*nodes.shape[1:4], n_nodes * c)

    def _nodes(self, inputs, arch, branches, params, stats, node_like, train):
        """The nodes ``[B, N, H, W, C]`` and the updated running averages."""
        n_nodes, n_ops = self.num_nodes, len(ENAS_MICRO_OPS)
        stat_values = {k: v.value for k, v in stats.items()}
        # A normal cell's candidates are one stack (the two inputs, then the nodes); a
        # reduction cell's nodes are at half the inputs' resolution: a stack of their own.
        if self.reduction:
            buf = jnp.zeros((n_nodes, *node_like.shape), node_like.dtype)
        else:
            buf = jnp.concatenate([inputs, jnp.zeros((n_nodes, *node_like.shape), node_like.dtype)])

        def node_step(buf, xs):
            b, seq, p_b, s_b = xs
            total, s_out = None, []
            for j in range(len(BRANCHES)):
                inp, op = seq[2 * j], seq[2 * j + 1]
                p_j = jax.tree.map(lambda a, j=j: a[j], p_b)
                s_j = jax.tree.map(lambda a, j=j: a[j], s_b)
                index = op + n_ops * (inp >= 2).astype(jnp.int32) if self.reduction else op
                # Only the chosen op runs: lax.switch compiles to an XLA conditional (this
                # scan body is never under vmap, where a batched index would make the switch
                # a select over every op).
                y, s_j = jax.lax.switch(index, branches, inputs, buf, inp, p_j, s_j)
                total = y if total is None else total + y
                s_out.append(s_j)
            at = b if self.reduction else b + 2
            buf = jax.lax.dynamic_update_index_in_dim(buf, total, at, 0)
            return buf, jax.tree.map(lambda *a: jnp.stack(a), *s_out)

        seqs = arch.reshape(n_nodes, 4)
        buf, new_stats = jax.lax.scan(
            node_step, buf, (jnp.arange(n_nodes), seqs, params, stat_values)
        )
        return (buf if self.reduction else buf[2:]), new_stats


@functools.lru_cache(maxsize=1024)
def _op_shapes(module: nn.Module, like: jax.ShapeDtypeStruct) -> dict:
    """``module``'s variables (shapes) when applied to ``like``-shaped inputs, by collection."""
    variables = jax.eval_shape(
        lambda k: module.init(k, jnp.zeros(like.shape, like.dtype), True), jax.random.key(0)
    )
    return _to_dict(variables)


@functools.lru_cache(maxsize=1024)
def _stacked_init_fn(module: nn.Module, like: jax.ShapeDtypeStruct, shape: tuple[int, ...]):
    """``key ->`` ``prod(shape)`` independent initialisations of ``module``'s variables (its
    own initializers), stacked to leading axes ``shape``: one program per op, input shape
    and stack shape, compiled once (``lazy_init``: the op's forward is not in it).

    Under an un-jitted ``lazy_init`` of the supergraph (as jnas initialises its supernets)
    the stacks then cost a few small programs; eager per-row calls, or a vmap outside
    ``jit``, compiled one program per array shape (hundreds)."""
    n = int(np.prod(shape))

    def init(key):
        rows = jax.vmap(lambda k: _to_dict(module.lazy_init(k, like, True)))(
            jax.random.split(key, n)
        )
        return jax.tree.map(lambda a: a.reshape(*shape, *a.shape[1:]), rows)

    return jax.jit(init)


def _stacked_init(module: nn.Module, like, shape: tuple[int, ...], collection: str):
    """The initializer of the stacked ``collection`` (:func:`_stacked_init_fn`). The ops'
    variables do not depend on the input's batch or spatial size: one program serves the
    cells of one channel count (its input: an 8x8 map of that many channels)."""
    like = jax.ShapeDtypeStruct((1, 8, 8, like.shape[-1]), like.dtype)
    return lambda key: _stacked_init_fn(module, like, shape)(key)[collection]


def _branch_fn(module, key, first, from_buf, has_params, has_stats, train):
    """The ``lax.switch`` branch of one op on a group of inputs (the states ``first, first +
    1, ...``): ``(inputs, buf, inp, params, stats) -> (y, stats)``. Its input is row ``inp -
    first`` of ``buf`` (``from_buf``) or of ``inputs``, picked with the traced ``inp``; its
    variables are the row ``inp`` of the op's stacks, whose running averages it updates in
    that row when ``train``. ``inputs`` stacks the two cell inputs, ``buf`` the states a
    normal cell's branch reads (inputs, then nodes) or a reduction cell's nodes.
    """

    def branch(inputs, buf, inp, params, stats):
        row = inp
        x = jax.lax.dynamic_index_in_dim(
            buf if from_buf else inputs, inp - first, 0, keepdims=False
        )
        variables = {}
        if has_params:
            variables["params"] = jax.tree.map(lambda a: a[row], params[key])
        if has_stats:
            variables["batch_stats"] = jax.tree.map(lambda a: a[row], stats[key])
        if train and has_stats:
            y, updates = module.apply(variables, x, True, mutable=["batch_stats"])
            stats = dict(stats)
            stats[key] = jax.tree.map(
                lambda old, new: old.at[row].set(new), stats[key], _to_dict(updates["batch_stats"])
            )
        else:
            y = module.apply(variables, x, train)
        return y, stats

    return branch
