"""Function-preserving network morphisms of the graph space (Auto-Keras, Jin et al. KDD 2019;
Net2Net, Chen et al. ICLR 2016), on the structure (:func:`apply_edit`) and on the
parameters (:func:`morph_variables`).

Four edits (:class:`Edit`), after Auto-Keras 0.3's ``net_transformer.py`` and
``nn/graph.py`` (``to_deeper_model``, ``to_wider_model``, ``to_add_skip_model``,
``to_concat_skip_model``), written anew for :mod:`jnas.spaces.graph`:

* ``deeper``: a new block right after layer ``at`` (it takes over every reader of ``at``):
  a conv-BN-ReLU block of kernel ``kernel`` (1, 3 or 5) and ``at``'s channel count after a
  feature map, a dense-ReLU block after a vector (``kernel`` 0). It starts as the identity:
  the kernel is the identity at its centre tap, batch norm has scale 1, bias 0, mean 0 and
  variance ``1 - eps`` (so that it is the identity in inference mode), and the ReLU is the
  identity because every tensor but the image is non-negative (every block and every add
  ends in a ReLU, pooling and concatenation keep the sign).
* ``wider``: layer ``at`` (conv or dense) and every layer tied to its channels by an add
  get ``width`` filters (Net2Wider, Chen et al. 2016): the new filters copy old ones drawn
  with the key, with their batch-norm parameters and statistics, and the readers' incoming
  weights of a filter's copies are split among them so that they sum to the old weight.
  Net2Net divides by the copy count and adds noise to break the copies' symmetry; Auto-Keras
  0.3 (``layer_transformer.wider_pre_conv`` / ``wider_next_conv``) copies filters and gives
  the copies zero outgoing weights, plus noise. Here the split is uneven instead (random
  positive shares drawn with the key), which breaks the symmetry and keeps the function
  exactly.
* ``skip_add``: ``add(to, branch)`` right after layer ``to``, where the branch reads layer
  ``at`` (an earlier layer of the same channel count) through copies of the pooling layers
  between them (Auto-Keras's ``_insert_pooling_layer_chain``); the branch's scale starts at
  zero (Auto-Keras: a zero 1x1 convolution).
* ``skip_concat``: ``concat(to, branch)`` right after ``to``, the branch as above; the
  readers downstream get zero incoming weights for the new channels. Allowed where no add
  is downstream of ``to`` before a conv or dense layer (an add's channel counts must
  match); Auto-Keras instead follows the concat with a 1x1 convolution.

:func:`possible_edits` lists, in a fixed order, every edit that keeps a graph within its
space's limits: deeper after every main-chain layer (each kernel of the space after a
feature map), wider (doubling, as Auto-Keras) of every tie group with a main-chain member,
and both skips between every pair of main-chain feature-map layers (Auto-Keras 0.3 uses the
main chain's layers too).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import numpy as np

from jnas.spaces.graph import (
    BN_EPSILON,
    CLASSIFIER,
    INPUT,
    KERNELS,
    POOLS,
    WEIGHTED,
    Graph,
    GraphError,
    Layer,
    host_rng,
)
from jnas.spaces.text import echo

EDIT_KINDS = ("deeper", "wider", "skip_add", "skip_concat")
_PREFIX = {"conv": "c", "dense": "d", "maxpool": "p", "avgpool": "p", "add": "add", "concat": "cat"}


class EditError(GraphError):
    """An edit that cannot be applied to the graph (named reason)."""


class MissingLayerError(EditError, KeyError):
    """An edit at a layer the graph does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class Edit:
    """One morphism (module docstring).

    Attributes:
      kind: ``deeper``, ``wider``, ``skip_add`` or ``skip_concat``.
      at: deeper: the layer the new block follows; wider: the layer widened; skips: the
        layer the skip connection leaves from.
      to: skips: the layer after which the merge goes (it reads ``to`` first, then the
        branch from ``at``); "" otherwise.
      kernel: deeper: the new conv's kernel (1, 3, 5), 0 for a dense block; 0 otherwise.
      width: wider: the new width (more than the current); 0 otherwise.
    """

    kind: str
    at: str
    to: str = ""
    kernel: int = 0
    width: int = 0

    KINDS: ClassVar[tuple[str, ...]] = EDIT_KINDS

    def __post_init__(self):
        if self.kind not in EDIT_KINDS:
            raise EditError(f"unknown edit kind {echo(self.kind)}; known: {list(EDIT_KINDS)}")

    def __str__(self) -> str:
        if self.kind == "deeper":
            return f"deeper({self.at}, k{self.kernel})" if self.kernel else f"deeper({self.at})"
        if self.kind == "wider":
            return f"wider({self.at}, {self.width})"
        return f"{self.kind}({self.at} -> {self.to})"


def _fresh(taken, prefix: str) -> str:
    n = 0
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def _layer(graph: Graph, name: str, edit: Edit) -> Layer:
    if name not in graph.by_name:
        raise MissingLayerError(f"{edit}: the graph has no layer {name!r}")
    return graph.by_name[name]


def _redirect(layers, old: str, new: str, skip: set[str]) -> list[Layer]:
    """Every layer (except those in ``skip``) that reads ``old`` reads ``new`` instead."""
    return [
        x
        if x.name in skip or old not in x.inputs
        else dataclasses.replace(x, inputs=tuple(new if i == old else i for i in x.inputs))
        for x in layers
    ]


# -- tie groups (channels bound together by adds) ------------------------------------------------


def tie_groups(graph: Graph) -> dict[str, frozenset[str]]:
    """For every conv, dense and concat layer (and ``input``), the set of such layers whose
    output channels an add ties to its own (itself included): widening one widens all."""
    parent: dict[str, str] = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent.setdefault(parent[a], parent[a])
            a = parent[a]
        return a

    source = {INPUT: INPUT}
    find(INPUT)
    for x in graph.layers:
        if x.kind in (*WEIGHTED, "concat"):
            source[x.name] = x.name
            find(x.name)
        elif x.kind in (*POOLS, "gpool"):
            source[x.name] = source[x.inputs[0]]
        else:  # add
            roots = [find(source[i]) for i in x.inputs]
            for r in roots[1:]:
                parent[find(r)] = find(roots[0])
            source[x.name] = source[x.inputs[0]]
    groups: dict[str, set[str]] = {}
    for n in parent:
        groups.setdefault(find(n), set()).add(n)
    return {n: frozenset(groups[find(n)]) for n in parent}


def _widenable(graph: Graph, name: str) -> frozenset[str] | None:
    """The layers a widening of ``name`` widens (its tie group), or None when it cannot be
    widened: an add ties it to the image or to a concat, or its channels flow (through
    pooling, adds and concatenations) into a concat whose channel count an add ties."""
    groups = tie_groups(graph)
    group = groups[name]
    if not all(g != INPUT and graph.by_name[g].kind in WEIGHTED for g in group):
        return None
    todo, seen = list(group), set(group)
    while todo:
        for r in graph.consumers(todo.pop()):
            kind = graph.by_name[r].kind
            if kind in WEIGHTED or r in seen:
                continue
            if kind == "concat" and len(groups[r]) > 1:
                return None
            seen.add(r)
            todo.append(r)
    return group


# -- structure ----------------------------------------------------------------------------------


def _path_pools(graph: Graph, src: str, dst: str) -> list[Layer]:
    """The pooling layers on a path from ``src`` to ``dst`` (src first); src is an ancestor."""
    pools, node = [], dst
    while node != src:
        layer = graph.by_name[node]
        if layer.kind in POOLS:
            pools.append(layer)
        node = next(i for i in layer.inputs if i == src or src in graph.ancestors[i])
    return pools[::-1]


def _concat_ok(graph: Graph, dst: str) -> bool:
    """Whether the readers downstream of ``dst`` reach conv/dense layers (or the classifier)
    through pooling and concatenation only, never an add."""
    todo, seen = [dst], set()
    while todo:
        n = todo.pop()
        readers = graph.consumers(n)
        for r in readers:
            kind = graph.by_name[r].kind
            if kind == "add":
                return False
            if kind not in WEIGHTED and r not in seen:
                seen.add(r)
                todo.append(r)
    return True


def _apply(graph: Graph, edit: Edit) -> Graph:
    """The child graph of ``edit`` (no limit check); EditError / MissingLayerError."""
    if not isinstance(edit, Edit):
        raise EditError(f"expected an Edit, got {type(edit).__name__}")
    taken = set(graph.names) | {INPUT, CLASSIFIER}
    layers = list(graph.layers)
    if edit.kind == "deeper":
        at = _layer(graph, edit.at, edit)
        shape = graph.shapes[at.name]
        if shape.channels is None:
            raise EditError(
                f"{edit}: {at.name!r} pools the image, which may be negative: a ReLU after it "
                "would not be the identity"
            )
        if shape.is_map:
            if edit.kernel not in KERNELS:
                raise EditError(f"{edit}: a conv block's kernel must be one of {list(KERNELS)}")
            new = Layer(_fresh(taken, "c"), "conv", (at.name,), shape.channels, edit.kernel)
        else:
            if edit.kernel != 0:
                raise EditError(f"{edit}: {at.name!r} gives a vector; a dense block has kernel 0")
            new = Layer(_fresh(taken, "d"), "dense", (at.name,), shape.channels)
        return Graph(tuple(_redirect(layers, at.name, new.name, set()) + [new]))
    if edit.kind == "wider":
        at = _layer(graph, edit.at, edit)
        if at.kind not in WEIGHTED:
            raise EditError(
                f"{edit}: only conv and dense layers are widened, {at.name!r} is {at.kind}"
            )
        group = _widenable(graph, at.name)
        if group is None:
            raise EditError(
                f"{edit}: an add ties {at.name!r}'s channels to the image or to a concat, or "
                "they reach a concat whose channel count an add ties"
            )
        if (
            isinstance(edit.width, bool)
            or not isinstance(edit.width, int)
            or edit.width <= at.width
        ):
            raise EditError(f"{edit}: the new width must be an int above {at.width}")
        return Graph(
            tuple(
                dataclasses.replace(x, width=edit.width) if x.name in group else x for x in layers
            )
        )
    # skips
    src = _layer(graph, edit.at, edit)
    dst = _layer(graph, edit.to, edit)
    shapes = graph.shapes
    if not (shapes[src.name].is_map and shapes[dst.name].is_map):
        raise EditError(f"{edit}: a skip connection joins two feature maps")
    if shapes[src.name].channels is None or shapes[dst.name].channels is None:
        raise EditError(f"{edit}: a merge may not read the image (or its pooling) directly")
    if src.name not in graph.ancestors[dst.name]:
        raise EditError(f"{edit}: {src.name!r} is not before {dst.name!r} (that would be a cycle)")
    if edit.kind == "skip_add" and shapes[src.name].channels != shapes[dst.name].channels:
        raise EditError(
            f"{edit}: an add needs equal channel counts, {src.name!r} has "
            f"{shapes[src.name].channels} and {dst.name!r} {shapes[dst.name].channels}"
        )
    if edit.kind == "skip_concat" and not _concat_ok(graph, dst.name):
        raise EditError(f"{edit}: an add downstream of {dst.name!r} would see more channels")
    branch, new = src.name, []
    for pool in _path_pools(graph, src.name, dst.name):
        name = _fresh(taken, "p")
        taken.add(name)
        new.append(Layer(name, pool.kind, (branch,)))
        branch = name
    kind = "add" if edit.kind == "skip_add" else "concat"
    merge = Layer(_fresh(taken, _PREFIX[kind]), kind, (dst.name, branch))
    layers = _redirect(layers, dst.name, merge.name, set())
    return Graph(tuple(layers + new + [merge]))


def apply_edit(space, graph: Graph, edit: Edit) -> Graph:
    """The child of ``graph`` under ``edit``, within ``space``'s limits (structure only).

    Raises:
      MissingLayerError: the edit names a layer the graph does not have.
      EditError: an edit that does not apply there (named reason).
      GraphLimitError: the parent or the child is over the space's limits.
    """
    space.check(graph, what="the parent graph")
    return space.check(_apply(graph, edit), what=f"the child of {edit}")


def candidate_edits(space, graph: Graph) -> list[Edit]:
    """Every edit that applies to ``graph`` (limits not checked), in the order of
    :func:`possible_edits`."""
    chain = [n for n in graph.main_chain if n != INPUT]
    shapes = graph.shapes
    out = []
    for n in chain:
        if shapes[n].channels is None:  # the image, pooled: may be negative
            continue
        if shapes[n].is_map:
            out += [Edit("deeper", n, kernel=k) for k in space.kernels]
        else:
            out.append(Edit("deeper", n))
    done = set()
    for n in chain:
        layer = graph.by_name[n]
        if layer.kind in WEIGHTED and n not in done:
            group = _widenable(graph, n)
            if group is not None:
                done |= group
                out.append(Edit("wider", n, width=2 * layer.width))
    # Skips between main-chain feature maps with a weighted layer between them (else the
    # skip would join a tensor to a pooled copy of itself: a zero-length skip).
    weighted, count = {}, 0
    for n in chain:
        count += graph.by_name[n].kind in WEIGHTED
        weighted[n] = count
    maps = [n for n in chain if shapes[n].is_map and shapes[n].channels is not None]
    for kind in ("skip_add", "skip_concat"):
        for j, dst in enumerate(maps):
            if kind == "skip_concat" and not _concat_ok(graph, dst):
                continue
            for src in maps[:j]:
                if weighted[dst] == weighted[src]:
                    continue
                if kind == "skip_add" and shapes[src].channels != shapes[dst].channels:
                    continue
                out.append(Edit(kind, src, dst))
    return out


def possible_edits(space, graph: Graph) -> list[Edit]:
    """Every edit whose child is within ``space``'s limits, in a fixed order: deeper (main
    chain order, then kernel), wider, skip_add, skip_concat (by destination, then source)."""
    out = []
    for edit in candidate_edits(space, graph):
        if space.within_limits(_apply(graph, edit)):
            out.append(edit)
    return out


def edit_between(parent: Graph, child: Graph) -> Edit:
    """The edit that turns ``parent`` into ``child`` (as :func:`apply_edit` makes it);
    EditError when ``child`` is not one morphism of ``parent``."""
    new = [x for x in child.layers if x.name not in parent.by_name]
    edit = None
    if not new:
        changed = [
            x
            for x in child.layers
            if x.kind in WEIGHTED and x.width != parent.by_name[x.name].width
        ]
        if changed:
            edit = Edit("wider", changed[0].name, width=changed[0].width)
    else:
        merges = [x for x in new if x.kind in ("add", "concat")]
        if merges:
            m = merges[0]
            src = m.inputs[1]
            while src not in parent.by_name:
                src = child.by_name[src].inputs[0]
            kind = "skip_add" if m.kind == "add" else "skip_concat"
            edit = Edit(kind, src, m.inputs[0])
        elif len(new) == 1:
            edit = Edit("deeper", new[0].inputs[0], kernel=new[0].kernel)
    if edit is not None:
        try:
            if _apply(parent, edit) == child:
                return edit
        except GraphError:
            pass
    raise EditError("the child graph is not one morphism of the parent graph")


# -- parameters -----------------------------------------------------------------------------------


def morph_variables(space, parent: Graph, child_or_edit, variables, key):
    """The child's variables (``params`` and ``batch_stats``) from the parent's, so that the
    child computes the parent's function (batch norm in inference mode).

    Args:
      space: the :class:`~jnas.spaces.graph.GraphSpace` (not used beyond the edit's
        structure; the limits are :func:`apply_edit`'s business).
      parent: the parent graph, whose network ``variables`` belong to.
      child_or_edit: the :class:`Edit`, or the child graph (the edit is then found by
        :func:`edit_between`).
      variables: ``{"params": ..., "batch_stats": ...}`` of ``space.network(parent)``.
      key: a PRNG key (wider: which filters are copied and how their weights are split).

    Returns:
      ``{"params", "batch_stats"}`` of the child's network (numpy float32 leaves).

    Raises:
      EditError: the child is not one morphism of the parent; variables of another graph.
    """
    del space
    if isinstance(child_or_edit, Edit):
        edit, child = child_or_edit, _apply(parent, child_or_edit)
    else:
        edit, child = edit_between(parent, child_or_edit), child_or_edit
    params = {k: _to_numpy(v) for k, v in dict(variables["params"]).items()}
    stats = {k: _to_numpy(v) for k, v in dict(variables.get("batch_stats", {})).items()}
    _check_belongs(parent, params, stats)
    if edit.kind == "deeper":
        new = next(x for x in child.layers if x.name not in parent.by_name)
        c = new.width
        if new.kind == "conv":
            kernel = np.zeros((new.kernel, new.kernel, c, c), np.float32)
            kernel[new.kernel // 2, new.kernel // 2] = np.eye(c, dtype=np.float32)
            params[new.name] = {
                "conv": {"kernel": kernel},
                "bn": {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)},
            }
            stats[new.name] = {
                "bn": {
                    "mean": np.zeros(c, np.float32),
                    "var": np.full(c, 1.0 - BN_EPSILON, np.float32),
                }
            }
        else:
            params[new.name] = {
                "dense": {"kernel": np.eye(c, dtype=np.float32), "bias": np.zeros(c, np.float32)}
            }
        return {"params": params, "batch_stats": stats}
    if edit.kind == "skip_add":
        merge = next(x for x in child.layers if x.name not in parent.by_name and x.kind == "add")
        params[merge.name] = {"scale": np.zeros((1, child.channels(merge.name)), np.float32)}
        return {"params": params, "batch_stats": stats}
    # wider and skip_concat: propagate each changed tensor's channel map to its readers.
    # idx[t][j]: the parent channel that channel j of tensor t copies (-1: a new zero one);
    # share[t][j]: the part of that channel's outgoing weights channel j carries.
    idx: dict[str, np.ndarray] = {}
    share: dict[str, np.ndarray] = {}
    producers: frozenset[str] = frozenset()
    if edit.kind == "wider":
        producers = tie_groups(parent)[edit.at]
        old = parent.by_name[edit.at].width
        rng = host_rng(key)  # jax.random would compile for every new width
        copies = rng.integers(0, old, edit.width - old)
        g = np.concatenate([np.arange(old), copies])
        u = rng.uniform(0.5, 1.5, edit.width)
        total = np.zeros(old)
        np.add.at(total, g, u)
        g_share = (u / total[g]).astype(np.float32)
    else:
        merge = next(x for x in child.layers if x.name not in parent.by_name and x.kind == "concat")
    for x in child.layers:
        ins = x.inputs
        if x.kind in WEIGHTED:
            if ins[0] in idx:
                _reader_rows(params[x.name], x.kind, idx[ins[0]], share[ins[0]])
            if x.name in producers:
                _gather_outputs(params[x.name], stats.get(x.name), x.kind, g)
                idx[x.name], share[x.name] = g, g_share
        elif x.kind in (*POOLS, "gpool"):
            if ins[0] in idx:
                idx[x.name], share[x.name] = idx[ins[0]], share[ins[0]]
        elif x.kind == "add":
            if ins[0] in idx:
                params[x.name]["scale"] = params[x.name]["scale"][:, idx[ins[0]]]
                idx[x.name], share[x.name] = idx[ins[0]], share[ins[0]]
        elif edit.kind == "skip_concat" and x.name == merge.name:
            c_dst, c_src = child.channels(ins[0]), child.channels(ins[1])
            idx[x.name] = np.concatenate([np.arange(c_dst), np.full(c_src, -1)])
            share[x.name] = np.ones(c_dst + c_src, np.float32)
        elif any(i in idx for i in ins):  # an existing concat with a changed input
            parts, shares, offset = [], [], 0
            for i in ins:
                # a new merge stands in for the tensor it follows (its first input)
                c_old = parent.channels(i if i in parent.by_name else child.by_name[i].inputs[0])
                if i in idx:
                    parts.append(np.where(idx[i] >= 0, idx[i] + offset, -1))
                    shares.append(share[i])
                else:
                    parts.append(np.arange(c_old) + offset)
                    shares.append(np.ones(c_old, np.float32))
                offset += c_old
            idx[x.name], share[x.name] = np.concatenate(parts), np.concatenate(shares)
    if child.output in idx:
        _reader_rows(params[CLASSIFIER], "classifier", idx[child.output], share[child.output])
    return {"params": params, "batch_stats": stats}


def _check_belongs(graph: Graph, params: dict, stats: dict) -> None:
    """EditError unless ``params`` / ``stats`` have the shapes of ``graph``'s network."""
    from jnas.spaces.graph import GraphNet

    expected = {x.name for x in graph.layers if x.kind in (*WEIGHTED, "add")} | {CLASSIFIER}
    if set(params) != expected:
        raise EditError(
            f"the variables do not belong to the parent graph: params hold {sorted(params)}, "
            f"the graph's network has {sorted(expected)}"
        )
    try:
        num_classes = int(np.shape(params[CLASSIFIER]["bias"])[0])
        first = next(
            x for x in graph.layers if x.kind == "conv" and graph.channels(x.inputs[0]) is None
        )
        c_in = int(np.shape(params[first.name]["conv"]["kernel"])[2])
    except (KeyError, TypeError, IndexError, StopIteration):
        raise EditError("the variables do not belong to the parent graph") from None
    shapes = jax.eval_shape(
        GraphNet(graph, num_classes).init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, 8, 8, c_in), np.float32),
    )
    want = jax.tree_util.tree_flatten_with_path(
        {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}
    )[0]
    have = dict(jax.tree_util.tree_flatten_with_path({"params": params, "batch_stats": stats})[0])
    for path, leaf in want:
        got = have.get(path)
        if got is None or tuple(np.shape(got)) != tuple(leaf.shape):
            raise EditError(
                f"the variables do not belong to the parent graph: {jax.tree_util.keystr(path)} "
                f"has shape {None if got is None else tuple(np.shape(got))}, the parent's "
                f"network has {tuple(leaf.shape)}"
            )


def _to_numpy(tree):
    """Nested mappings (dicts or FrozenDicts) -> plain dicts of float32 numpy copies."""
    if hasattr(tree, "items"):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.array(tree, np.float32)


def _reader_rows(p: dict, kind: str, idx: np.ndarray, share: np.ndarray) -> None:
    """A reader's incoming weights for a changed input: row j is the parent's row ``idx[j]``
    times ``share[j]`` (zero for a new channel)."""
    leaf = p if kind == "classifier" else p["conv" if kind == "conv" else "dense"]
    w = leaf["kernel"]  # conv [k, k, in, out]; dense [in, out]
    axis = w.ndim - 2
    rows = np.take(w, np.maximum(idx, 0), axis=axis)
    scale = np.where(idx >= 0, share, 0.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    leaf["kernel"] = rows * scale.reshape(shape)


def _gather_outputs(p: dict, s: dict | None, kind: str, g: np.ndarray) -> None:
    """A widened layer's outputs: channel j copies the parent's channel ``g[j]``."""
    if kind == "conv":
        p["conv"]["kernel"] = p["conv"]["kernel"][..., g]
        p["bn"] = {k: v[g] for k, v in p["bn"].items()}
        s["bn"] = {k: v[g] for k, v in s["bn"].items()}
    else:
        p["dense"] = {"kernel": p["dense"]["kernel"][:, g], "bias": p["dense"]["bias"][g]}
