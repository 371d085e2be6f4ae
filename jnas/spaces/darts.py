"""The DARTS cell search space and its supernet (Liu et al., ICLR 2019, Sec. 2.1-2.2).

:class:`DartsSpace` implements :class:`jnas.spaces.base.OneShotSpace` and registers as
``"darts"``: its decisions (two inputs and two ops per node and cell type), the
:class:`~jnas.spaces.genotype.Genotype` text, the evaluation network of a genotype, the
supernet, ``init_alpha`` and ``derive`` (the DARTS discretization, in float64 on the host).

A cell is a DAG of ``n_nodes`` intermediate nodes; node ``j`` sums one edge from each earlier
state (the two cell inputs and nodes ``0..j-1``), so 4 nodes give 14 edges. On edge
``(i, j)`` the supernet computes a *mixed op* of the candidate ops (Eq. 2):

    o_bar(x) = sum_o w_o o(x),    w = softmax(alpha_(i,j))    (for DARTS)

The space knows nothing of how it is searched: :class:`SearchNetwork` takes, per cell type,
an *architecture pytree* whose leaves have a leading edge axis (e.g. the DARTS weights
``[14, 8]``) and hands each edge its slice; the edge module (``mixed_op``, a Flax module
class) decides how to combine the ops. DARTS uses :class:`MixedOp`; other strategies plug in
their own (sampled, partial-channel, ...).

Speed: the edges leaving one state share their input, so they run as one ``nn.vmap`` over
the edge axis (the input broadcast, parameters stacked), 5 groups per cell instead of 14
edges. This cuts the ops XLA compiles about threefold, and lets the depthwise convolutions
reuse the input's shifted slices across edges.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers
from jnas.ops.primitives import (
    DARTS_PRIMITIVES,
    FactorizedReduce,
    ReLUConvBN,
    check_op,
    make_op,
)
from jnas.spaces.base import SPACES, Fidelity, OneShotSpace
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.spaces.genotype import Genotype, MalformedGenotypeError

CELL_TYPES = ("normal", "reduce")


@SPACES.register("darts")
@dataclasses.dataclass(frozen=True)
class DartsSpace(OneShotSpace):
    """The DARTS cell space: candidate ops, cell shape, the supernet and the evaluation network.

    Decisions (:attr:`spec`, the canonical encoding): per cell type (normal, then reduce),
    per intermediate node ``j``, per kept edge ``s`` (``edges_per_node``, 2 in DARTS), in the
    order the genotype lists them: ``"<cell>/node<j>/in<s>"`` (the input state, ``0..j+1``)
    and ``"<cell>/node<j>/op<s>"`` (a candidate op other than ``"none"``). The encoding keeps
    the genotype's order of the two pairs of a node (a derived genotype lists the stronger
    edge first), so ``decode(encode(g)) == g`` and the text round-trips exactly; two vectors
    that list one node's pairs in swapped order describe the same network. Every
    intermediate node is concatenated (``*_concat = [2, ..., n_nodes + 1]``).

    Attributes:
      primitives: the candidate op names; ``"none"`` is a supernet op only (never derived).
      n_nodes: intermediate nodes per cell (4 in DARTS).
      edges_per_node: incoming edges kept per node when deriving a genotype (2 in DARTS).
      multiplier, stem_multiplier: the supernet's concatenated states and stem width factor.
      C, layers: the supernet's initial channels and cells (16 and 8 in DARTS).
      eval_network, eval_C, eval_layers: the evaluation network of a fixed genotype
        (:func:`jnas.spaces.cells.build_network`; DARTS CIFAR-10: ``"cifar"``, 36, 20).
    """

    name: ClassVar[str] = "darts"

    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    n_nodes: int = 4
    edges_per_node: int = 2
    multiplier: int = 4
    stem_multiplier: int = 3
    C: int = 16
    layers: int = 8
    eval_network: str = "cifar"
    eval_C: int = 36
    eval_layers: int = 20

    def __post_init__(self):
        object.__setattr__(self, "primitives", tuple(self.primitives))
        for p in self.primitives:
            check_op(p)
        if len(set(self.primitives)) != len(self.primitives):
            raise ValueError(f"duplicate primitives in {self.primitives}")
        if not self.derivable_ops:
            raise ValueError(f"the primitives {self.primitives} have no op other than 'none'")
        for field in (
            "n_nodes",
            "edges_per_node",
            "multiplier",
            "stem_multiplier",
            "C",
            "layers",
            "eval_C",
            "eval_layers",
        ):
            value = getattr(self, field)
            if int(value) < 1:
                raise ValueError(f"the DARTS space's {field} must be >= 1, got {value}")
        if self.multiplier > self.n_nodes + 2:
            raise ValueError(
                f"the DARTS space concatenates the last multiplier={self.multiplier} states, but "
                f"its cells have {self.n_nodes + 2} (two inputs and n_nodes={self.n_nodes})"
            )

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """``(source_state, target_node)`` per edge, in the DARTS order (by target node)."""
        return tuple((i, j) for j in range(self.n_nodes) for i in range(j + 2))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.primitives)

    @property
    def derivable_ops(self) -> tuple[str, ...]:
        """The ops a genotype may use: the primitives other than ``"none"``."""
        return tuple(p for p in self.primitives if p != "none")

    @property
    def concat(self) -> tuple[int, ...]:
        """The concatenated states of a derived cell: every intermediate node."""
        return tuple(range(2, self.n_nodes + 2))

    # -- decisions ---------------------------------------------------------------------

    @property
    def spec(self) -> DecisionSpec:
        decisions = []
        for t in CELL_TYPES:
            for j in range(self.n_nodes):
                for s in range(self.edges_per_node):
                    decisions.append(Categorical(f"{t}/node{j}/in{s}", tuple(range(j + 2))))
                    decisions.append(Categorical(f"{t}/node{j}/op{s}", self.derivable_ops))
        return DecisionSpec(tuple(decisions))

    def encode(self, obj) -> np.ndarray:
        """A :class:`Genotype` of this space -> int32 vector ``[spec.length]``.

        Raises:
          MalformedGenotypeError: a cell of another shape, an op that is not a candidate of
            this space (``"none"`` included), or a concat other than :attr:`concat`.
        """
        if not isinstance(obj, Genotype):
            raise MalformedGenotypeError(f"expected a Genotype, got {type(obj).__name__}")
        ops = self.derivable_ops
        out = []
        for t in CELL_TYPES:
            cell, concat = getattr(obj, t), getattr(obj, f"{t}_concat")
            if len(cell) != self.n_nodes * self.edges_per_node:
                raise MalformedGenotypeError(
                    f"{t} cell has {len(cell)} edges; this space has {self.n_nodes} nodes of "
                    f"{self.edges_per_node} edges"
                )
            if tuple(concat) != self.concat:
                raise MalformedGenotypeError(
                    f"{t}_concat {list(concat)}: this space concatenates {list(self.concat)}"
                )
            for k, (op, i) in enumerate(cell):
                j = k // self.edges_per_node
                if op not in ops:
                    raise MalformedGenotypeError(
                        f"{t} cell, node {j}: op {op!r} is not a candidate of this space "
                        f"({', '.join(ops)})"
                    )
                if not 0 <= i < j + 2:
                    raise MalformedGenotypeError(
                        f"{t} cell, node {j}: input index {i} must be in [0, {j + 1}]"
                    )
                out += [i, ops.index(op)]
        return np.asarray(out, np.int32)

    def decode(self, arch) -> Genotype:
        """int32 vector -> :class:`Genotype` (see :attr:`spec`)."""
        if isinstance(arch, Genotype):
            return arch
        a = self.spec.validate(arch).tolist()
        ops, half = self.derivable_ops, len(a) // 2
        cells = [
            tuple((ops[a[p + 1]], a[p]) for p in range(start, start + half, 2))
            for start in (0, half)
        ]
        return Genotype(cells[0], self.concat, cells[1], self.concat)

    def to_text(self, arch) -> str:
        """The genotype text (``str(Genotype)``)."""
        return str(self.decode(arch))

    def parse(self, text: str) -> np.ndarray:
        """Genotype text -> int32 vector; raises a :class:`MalformedGenotypeError` subclass
        naming the problem (strict, as :meth:`Genotype.parse`; ``UnknownGenotypeOpError`` is
        also an ``UnknownOpError``)."""
        return self.encode(Genotype.parse(text))

    # -- networks ----------------------------------------------------------------------

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None, **options):
        """The evaluation network of a genotype (vector, or any :class:`Genotype`, e.g. one
        with a fixed reduction cell); ``fidelity.width`` scales :attr:`eval_C`."""
        from jnas.spaces import cells  # the evaluation cells (imports the op kernels)

        genotype = arch if isinstance(arch, Genotype) else self.decode(arch)
        width = 1.0 if fidelity is None else float(fidelity.width)
        kw = dict(
            C=max(1, round(self.eval_C * width)),
            layers=self.eval_layers,
            num_classes=num_classes,
            auxiliary=False,
        )
        kw.update(options)
        return cells.build_network(self.eval_network, genotype, **kw)

    def supernet(self, *, num_classes: int, **options) -> SearchNetwork:
        """The DARTS search network of this space; ``options`` override its fields
        (``mixed_op``, ``primitives`` per edge, ``C``, ``layers``, ``vmap_edges``,
        ``scan_edges``, ``remat``, ``bn_axis_name``)."""
        kw = dict(
            C=self.C,
            num_classes=num_classes,
            layers=self.layers,
            n_nodes=self.n_nodes,
            multiplier=self.multiplier,
            stem_multiplier=self.stem_multiplier,
            primitives=self.primitives,
        )
        kw.update(options)
        return SearchNetwork(**kw)

    def init_alpha(self, key: jax.Array, scale: float = 1e-3) -> dict[str, jax.Array]:
        """``alpha`` per cell type, ``scale * N(0, 1)`` of shape ``[num_edges, num_ops]``."""
        keys = jax.random.split(key, len(CELL_TYPES))
        shape = (self.num_edges, self.num_ops)
        return {t: scale * jax.random.normal(k, shape) for t, k in zip(CELL_TYPES, keys)}

    def derive(self, weights: Mapping[str, Any], *, candidates=None, concat=None) -> Genotype:
        """The DARTS discretization (Sec. 2.4): per node, keep the ``edges_per_node`` incoming
        edges whose strongest candidate op other than ``"none"`` is largest, each with that
        op; ties go to the lower edge and the lower op index (Python's stable ``sorted``, as
        the DARTS code).

        The rule only compares weights, so any increasing function of them gives the same
        cell: pass ``log_softmax(alpha)`` in float64 (:func:`log_softmax64`), which keeps
        an op that leads the others by hundreds apart from the rest, where a float32
        softmax rounds the others to the same zero.

        Args:
          weights: per cell type ``[num_edges, num_ops]`` op strengths (columns:
            :attr:`primitives`), compared on the host in float64.
          candidates: per cell type, bool ``[num_edges, num_ops]``: the ops an edge may pick
            (default: all); an edge picks among its own candidates even when they all tie
            (e.g. at ``-inf``). An edge with no candidate other than ``"none"`` is chosen
            only after every other edge of its node.
          concat: the concatenated states, by default :attr:`concat`.

        Returns:
          The :class:`Genotype`.
        """
        concat = tuple(concat or self.concat)
        cells = {}
        for t in CELL_TYPES:
            w = np.asarray(weights[t], np.float64)
            if w.shape != (self.num_edges, self.num_ops):
                raise ValueError(
                    f"{t} weights have shape {w.shape}, expected {(self.num_edges, self.num_ops)}"
                )
            mask = np.ones(w.shape, bool) if candidates is None else np.asarray(candidates[t])
            cells[t] = _derive_cell(w, mask, self)
        return Genotype(cells["normal"], concat, cells["reduce"], concat)


def log_softmax64(alpha) -> Any:
    """``log_softmax`` over the last axis of every leaf, on the host in float64.

    Computed as ``(a - max) - log1p(s)``, ``s`` the sum of ``exp(a_j - max)`` over all but
    one largest entry, so that a weight close to 1 keeps its distance from 1 (``-s``, down
    to about 1e-308) and tiny weights keep their order. ``s`` sums its terms in sorted
    order: two rows holding the same values in another order get bit-identical
    log-weights (their ties stay ties).
    """

    def one(a):
        a = np.asarray(a, np.float64)
        m = np.max(a, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.exp(a - m)
        np.put_along_axis(e, np.argmax(a, axis=-1)[..., None], 0.0, axis=-1)
        s = np.sum(np.sort(e, axis=-1), axis=-1, keepdims=True)
        return (a - m) - np.log1p(s)

    return jax.tree.map(one, alpha)


def _derive_cell(w: np.ndarray, mask: np.ndarray, space: DartsSpace) -> list[tuple[str, int]]:
    ops = space.primitives
    valid = np.array([p != "none" for p in ops])
    gene, start = [], 0
    for j in range(space.n_nodes):
        n_in = j + 2
        allowed = [np.flatnonzero(mask[start + i] & valid).tolist() for i in range(n_in)]
        # An edge's strength: its strongest allowed op (-inf when it has none, and it then
        # comes after the edges that have one). Stable sort: ties keep the lower index.
        strength = [
            (0, -max(w[start + i, k] for k in allowed[i])) if allowed[i] else (1, 0.0)
            for i in range(n_in)
        ]
        chosen = sorted(range(n_in), key=lambda i: strength[i])[: space.edges_per_node]
        for i in chosen:
            if not allowed[i]:
                raise ValueError(f"node {j}: edge from state {i} has no candidate op but 'none'")
            best = allowed[i][0]
            for k in allowed[i][1:]:
                if w[start + i, k] > w[start + i, best]:
                    best = k
            gene.append((ops[best], i))
        start += n_in
    return gene


def weighted_sum_of_ops(
    x: jax.Array,
    weights: jax.Array,
    primitives: tuple[str, ...],
    features: int,
    stride: int,
    train: bool,
    bn_axis_name: str | None = None,
    transform: Callable[[str, jax.Array], jax.Array] | None = None,
) -> jax.Array:
    """``sum_k weights[k] * op_k(x)`` over the edge's ops (``"none"`` adds nothing): the mixed
    op of DARTS (Eq. 2), shared by every edge module that mixes ops.

    Call it inside a compact module's ``__call__``: the ops become that module's submodules,
    named by op. ``transform(name, y)`` (optional) changes an op's output before it is
    weighted (P-DARTS's dropout after the skip connection). An edge of ``"none"`` only gives
    zeros of the output's shape.
    """
    out = None
    for k, name in enumerate(primitives):
        if name == "none":
            continue
        op = make_op(
            name,
            features,
            stride,
            affine=False,
            bn_axis_name=bn_axis_name,
            search=True,
            module_name=name,
        )
        y = op(x, train)
        if transform is not None:
            y = transform(name, y)
        y = weights[k] * y
        out = y if out is None else out + y
    if out is None:  # only "none" on this edge
        out = jnp.zeros_like(x[:, ::stride, ::stride, :]) * jnp.sum(weights)
    return out


class MixedOp(nn.Module):
    """The DARTS mixed op: ``sum_k weights[k] * op_k(x)`` (``none`` adds nothing)."""

    features: int
    stride: int
    primitives: tuple[str, ...]
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, weights: jax.Array, train: bool = True) -> jax.Array:
        return weighted_sum_of_ops(
            x, weights, self.primitives, self.features, self.stride, train, self.bn_axis_name
        )


class _Edge(nn.Module):
    """Binds ``train`` so that the edge op can be vmapped over (x, arch) alone."""

    op_cls: Any
    features: int
    stride: int
    primitives: tuple[str, ...]
    bn_axis_name: str | None
    train: bool

    @nn.compact
    def __call__(self, x, arch):
        op = self.op_cls(self.features, self.stride, self.primitives, self.bn_axis_name)
        return op(x, arch, self.train)


class _ScanEdge(_Edge):
    """One iteration of :meth:`SearchCell._scanned`: ``states[dst] += edge(x, arch_e)``,
    ``x`` state ``src`` of the buffer (or of ``sources``, the cell inputs of a reduction
    cell's stride-2 edges)."""

    @nn.compact
    def __call__(self, states, xs, sources):
        src, dst, arch_e = xs
        x = jax.lax.dynamic_index_in_dim(
            states if sources is None else sources, src, keepdims=False
        )
        op = self.op_cls(self.features, self.stride, self.primitives, self.bn_axis_name)
        y = op(x, arch_e, self.train)
        total = jax.lax.dynamic_index_in_dim(states, dst, keepdims=False) + y
        return jax.lax.dynamic_update_index_in_dim(states, total, dst, 0), None


def _edge_primitives(primitives, num_edges):
    """Per-edge op tuples from a flat tuple (all edges alike) or a tuple of tuples."""
    if primitives and isinstance(primitives[0], str):
        return (tuple(primitives),) * num_edges
    if len(primitives) != num_edges:
        raise ValueError(f"need one op tuple per edge ({num_edges}), got {len(primitives)}")
    return tuple(tuple(p) for p in primitives)


class SearchCell(nn.Module):
    """One supernet cell: preprocess both inputs, then ``n_nodes`` mixed-op nodes."""

    features: int
    reduction: bool
    reduction_prev: bool
    primitives: tuple
    n_nodes: int = 4
    multiplier: int = 4
    mixed_op: Any = MixedOp
    vmap_edges: bool = True
    scan_edges: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, s0, s1, arch, train: bool = True):
        c, axis = self.features, self.bn_axis_name
        if self.reduction_prev:
            s0 = FactorizedReduce(c, affine=False, bn_axis_name=axis, name="pre0")(s0, train)
        else:
            s0 = _relu_conv_bn(c, axis, "pre0")(s0, train)
        s1 = _relu_conv_bn(c, axis, "pre1")(s1, train)

        edges = [(i, j) for j in range(self.n_nodes) for i in range(j + 2)]
        edge_id = {e: k for k, e in enumerate(edges)}
        prims = _edge_primitives(self.primitives, len(edges))
        if self.scan_edges and len(set(prims)) == 1:
            return self._scanned(s0, s1, arch, edges, prims[0], train)
        sums: list[Any] = [None] * self.n_nodes
        states = [s0, s1]
        # "Push" order: once state i exists, run all its outgoing edges (one vmapped group).
        # Node i - 1 takes states 0..i, so it is complete once state i's edges have run.
        for i in range(self.n_nodes + 1):
            targets = [j for j in range(self.n_nodes) if i < j + 2]
            ids = [edge_id[(i, j)] for j in targets]
            stride = 2 if self.reduction and i < 2 else 1
            outs = self._run_group(states[i], arch, ids, stride, prims, train, f"from_{i}")
            for j, out in zip(targets, outs):
                sums[j] = out if sums[j] is None else sums[j] + out
            if i >= 1:
                states.append(sums[i - 1])
        return jnp.concatenate(states[-self.multiplier :], axis=-1)

    def _scanned(self, s0, s1, arch, edges, prims, train):
        """The edges as ``nn.scan`` loops over a buffer of the cell's states.

        Node ``j``'s edges come after those of nodes ``< j`` in the DARTS order, so a loop
        over the edges in that order finds every source state complete. Each iteration
        reads state ``i``, runs one edge module (parameters stacked on a leading edge axis)
        and adds its output into node ``j``'s slot: XLA compiles one edge per loop instead
        of one per edge. A reduction cell has two loops, as its edges have two strides:
        first the stride-2 edges from the cell inputs, then the stride-1 edges from nodes.
        """
        n_states = self.n_nodes + 2
        if self.reduction:
            phases = [
                ([k for k, (i, _) in enumerate(edges) if i < 2], 2, "edges_s2"),
                ([k for k, (i, _) in enumerate(edges) if i >= 2], 1, "edges_s1"),
            ]
            inputs = jnp.stack([s0, s1])
            out = s0[:, ::2, ::2, :]
            states = jnp.zeros((n_states, *out.shape), out.dtype)
        else:
            phases = [(list(range(len(edges))), 1, "edges")]
            inputs = None
            states = jnp.concatenate(
                [jnp.stack([s0, s1]), jnp.zeros((self.n_nodes, *s1.shape), s1.dtype)]
            )
        for ids, stride, name in phases:
            if not ids:
                continue
            loop = nn.scan(
                _ScanEdge,
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True, "dropout": True, "gumbel": True},
                in_axes=(0, nn.broadcast),
                length=len(ids),
            )
            xs = (
                jnp.asarray([edges[k][0] for k in ids], jnp.int32),
                jnp.asarray([edges[k][1] + 2 for k in ids], jnp.int32),
                jax.tree_util.tree_map(lambda a: a[np.asarray(ids)], arch),
            )
            sources = inputs if stride == 2 else None
            edge = loop(
                self.mixed_op, self.features, stride, prims, self.bn_axis_name, train, name=name
            )
            states, _ = edge(states, xs, sources)
        return jnp.concatenate(list(states[-self.multiplier :]), axis=-1)

    def _run_group(self, x, arch, ids, stride, prims, train, name):
        group_prims = {prims[k] for k in ids}
        sliced = jax.tree_util.tree_map(lambda a: a[np.asarray(ids)], arch)
        edge = functools.partial(
            _Edge,
            self.mixed_op,
            self.features,
            stride,
            bn_axis_name=self.bn_axis_name,
            train=train,
        )
        if self.vmap_edges and len(group_prims) == 1 and len(ids) > 1:
            group = nn.vmap(
                _Edge,
                in_axes=(None, 0),
                out_axes=0,
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True, "dropout": True, "gumbel": True},
                axis_size=len(ids),
            )
            out = group(
                self.mixed_op,
                self.features,
                stride,
                prims[ids[0]],
                self.bn_axis_name,
                train,
                name=name,
            )(x, sliced)
            return [out[n] for n in range(len(ids))]
        return [
            edge(prims[k], name=f"{name}_e{k}")(x, jax.tree_util.tree_map(lambda a: a[n], sliced))
            for n, k in enumerate(ids)
        ]


def _relu_conv_bn(c, axis, name):
    return ReLUConvBN(c, 1, 1, 0, affine=False, bn_axis_name=axis, name=name)


class SearchNetwork(nn.Module):
    """The DARTS search network (``model_search.Network``).

    Stem (3x3 conv to ``stem_multiplier * C``, BN), ``layers`` cells with reductions at 1/3
    and 2/3 depth (channels doubled there), global average pooling, a linear classifier.

    Call as ``net.apply(variables, images, arch, train=...)`` where ``arch`` is
    ``{"normal": tree, "reduce": tree}``, each tree's leaves having a leading edge axis.
    """

    C: int = 16
    num_classes: int = 10
    layers: int = 8
    n_nodes: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    primitives: Any = DARTS_PRIMITIVES
    mixed_op: Any = MixedOp
    vmap_edges: bool = True
    scan_edges: bool = False
    remat: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, arch: dict[str, Any], train: bool = True) -> jax.Array:
        c = self.C
        s = layers.Conv2d(self.stem_multiplier * c, (3, 3), padding=(1, 1), name="stem_conv")(x)
        s = layers.batch_norm(True, self.bn_axis_name, name="stem_bn")(
            s, use_running_average=not train
        )
        s0 = s1 = s
        reduction_prev = False
        cell_cls = nn.remat(SearchCell, static_argnums=(4,)) if self.remat else SearchCell
        for i in range(self.layers):
            reduction = i in reduction_layers(self.layers)
            if reduction:
                c *= 2
            cell_type = "reduce" if reduction else "normal"
            prims = self.primitives
            if isinstance(prims, Mapping):  # per cell type (Flax freezes dicts)
                prims = prims[cell_type]
            cell = cell_cls(
                features=c,
                reduction=reduction,
                reduction_prev=reduction_prev,
                primitives=prims,
                n_nodes=self.n_nodes,
                multiplier=self.multiplier,
                mixed_op=self.mixed_op,
                vmap_edges=self.vmap_edges,
                scan_edges=self.scan_edges,
                bn_axis_name=self.bn_axis_name,
                name=f"cell_{i}",
            )
            s0, s1 = s1, cell(s0, s1, arch[cell_type], train)
            reduction_prev = reduction
        out = jnp.mean(s1, axis=(1, 2))
        return layers.Dense(self.num_classes, name="classifier")(out)


def reduction_layers(layers: int) -> tuple[int, int]:
    """The cell indices that reduce resolution: 1/3 and 2/3 of the depth."""
    return (layers // 3, 2 * layers // 3)
