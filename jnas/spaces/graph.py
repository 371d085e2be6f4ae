"""The graph space of Auto-Keras (Jin, Song and Hu, KDD 2019): real CNNs as graphs of layers,
searched by function-preserving network morphisms (:mod:`jnas.spaces.morphism`).

A network is a :class:`Graph`: a directed acyclic graph of named layers reading the image
(``input``) and each other; the one layer that no other layer reads is the output, a vector
that a dense classifier (``classifier``, added by :meth:`GraphSpace.network`) maps to logits.
Layer kinds (:data:`KINDS`):

* ``conv``: a conv-BN-ReLU block, kernel 1, 3 or 5 (stride 1, SAME padding, no bias),
  ``width`` filters; reads a feature map;
* ``maxpool`` / ``avgpool``: 2x2 pooling, stride 2, SAME padding (a map of side n becomes
  ceil(n / 2)); reads a feature map;
* ``gpool``: global average pooling, a feature map to a vector;
* ``dense``: a dense-ReLU block of ``width`` units; reads a vector;
* ``add``: ``relu(x_0 + sum_k s_k * x_k)`` of two or more inputs of the same shape, with a
  learned per-channel scale ``s_k`` of each input after the first (ones for a network built
  from scratch; zeros for a skip connection a morphism adds, so that it starts at zero and
  its scale still receives gradient). The ReLU keeps every tensor of a network except the
  image non-negative, which the deeper morphism needs (``relu(x) = x``);
* ``concat``: the depth concatenation of two or more inputs of the same spatial size.

Shapes are checked without an image size: a feature map's size is the number of 2x2 pools
on its path from the image (its *level*); ``add`` needs equal levels and channel counts,
``concat`` equal levels. The image (``input``) may be read only by ``conv`` and pooling
layers (its channel count is the data's). Every violation raises a named
:class:`GraphError` subclass: :class:`GraphCycleError`, :class:`GraphDanglingError` (an
input that names no layer, or a layer nobody reads besides the output),
:class:`GraphShapeError`, :class:`UnknownLayerError`; a graph over the space's size limits
raises :class:`GraphLimitError`.

**Text form**: layers ``;``-separated in topological order, each
``name=op<-input,input``, where ``op`` is ``conv{k}x{width}``, ``dense{width}``,
``maxpool``, ``avgpool``, ``gpool``, ``add`` or ``concat``; e.g.
``c0=conv3x16<-input; p0=maxpool<-c0; g0=gpool<-p0; d0=dense32<-g0``. Names are
``[a-z][a-z0-9_]*`` (at most 32 characters; ``input`` and ``classifier`` are reserved).
Parsing is strict (:mod:`jnas.spaces.text`) and accepts the layers in any order (the graph
is stored in a canonical topological order, so ``parse(to_text(g)) == g``).

**Descriptor** (:class:`Descriptor`, Auto-Keras 0.2's ``NetworkDescriptor``, which the
edit-distance kernel reads): the conv and dense layers of the main chain (the longest path
from the image to the output) as ``(kind, width)``, and the skip connections as
``(from, to, "add" | "concat")``, where a position counts the main chain's weighted layers
before a point (Auto-Keras 0.2.0 ``Graph.extract_descriptor``: "how many Conv and Dense
layers before it"): ``from`` those before the skip leaves the main chain, ``to`` those
before the merge. Unlike Auto-Keras 0.2, 1x1 convolutions count (here a skip connection has
no convolution of its own), and the classifier is left out (it is the same in every graph).

**Decisions**: a graph of variable size has no fixed int32 vector, so ``spec``, ``encode``
and ``decode`` raise :class:`GraphHasNoVectorError`: this space is searched by morphisms
(``jnas.strategies.morphism_bo``), never by the discrete strategies.

The space registers as ``"graph"``; its parameters are keyed by layer name
(``params[name]["conv"]``, ``["bn"]``; ``params[name]["dense"]``; ``params[name]["scale"]``
of an add; ``params["classifier"]``), so that a morphism maps a parent's variables to the
child's (:func:`jnas.spaces.morphism.morph_variables`).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import re
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.errors import JnasError
from jnas.spaces.base import SPACES, Fidelity, SearchSpace
from jnas.spaces.discrete import (
    ArchitectureError,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    NonAsciiTextError,
)
from jnas.spaces.text import ASCII_SPACE, TextErrors, check_text, echo, parse_int

KINDS = ("conv", "dense", "maxpool", "avgpool", "gpool", "add", "concat")
POOLS = ("maxpool", "avgpool")
WEIGHTED = ("conv", "dense")
MERGES = ("add", "concat")
KERNELS = (1, 3, 5)
INPUT = "input"
CLASSIFIER = "classifier"
RESERVED = (INPUT, CLASSIFIER)
MAX_NAME = 32
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


class GraphError(ArchitectureError):
    """A graph that is not a valid network (the subclasses name the problem)."""


class GraphSyntaxError(GraphError, ArchitectureSyntaxError):
    """A text (or layer name) not of the graph's text form."""


class GraphNonAsciiError(GraphSyntaxError, NonAsciiTextError):
    """A text with a character outside ASCII (e.g. a Unicode digit)."""


class GraphTypeError(GraphError, ArchitectureTypeError):
    """A value of the wrong type (a text that is not a str, a width that is not an int)."""


class GraphRangeError(GraphError, ArchitectureRangeError):
    """A well-formed value out of range: a kernel size that is not 1, 3 or 5, a width < 1."""


class GraphCycleError(GraphError):
    """Layers that read each other in a cycle."""


class GraphDanglingError(GraphError):
    """A connection from a layer that does not exist, or a layer whose output nobody reads
    (only the output layer may be unread)."""


class GraphShapeError(GraphError):
    """Inputs whose shapes do not fit the layer: an add of different channel counts or
    spatial sizes, a concat of different spatial sizes, a conv on a vector, a dense on a
    feature map, an output that is not a vector."""


class UnknownLayerError(GraphSyntaxError):
    """A layer kind that is not one of :data:`KINDS`."""


class GraphLimitError(GraphRangeError):
    """A graph over its space's size limits (``max_layers``, ``max_params``)."""


class GraphHasNoVectorError(JnasError, NotImplementedError):
    """The graph space has no fixed-length int32 encoding: it is searched by morphisms."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a :class:`Graph`.

    Attributes:
      name: unique in its graph, ``[a-z][a-z0-9_]*``, not ``input`` or ``classifier``.
      kind: one of :data:`KINDS`.
      inputs: the names of the layers (or ``input``) it reads, in order (for ``add``, the
        first is the main path; the others are scaled).
      width: filters of a conv, units of a dense (0 for the other kinds).
      kernel: a conv's kernel size, 1, 3 or 5 (0 for the other kinds).

    Raises:
      GraphError: (subclasses) a bad name, kind, number of inputs, width or kernel.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    width: int = 0
    kernel: int = 0

    def __post_init__(self):
        _check_layer(self)

    def op_text(self) -> str:
        """The op of the text form: ``conv3x16``, ``dense32``, ``maxpool``, ..."""
        if self.kind == "conv":
            return f"conv{self.kernel}x{self.width}"
        if self.kind == "dense":
            return f"dense{self.width}"
        return self.kind

    def to_text(self) -> str:
        return f"{self.name}={self.op_text()}<-{','.join(self.inputs)}"


@dataclasses.dataclass(frozen=True)
class Shape:
    """A tensor's shape without the image size: ``level`` pools below the image (None: a
    vector) and ``channels`` (None: the image's own, unknown to the graph)."""

    level: int | None
    channels: int | None

    @property
    def is_map(self) -> bool:
        return self.level is not None


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """Auto-Keras's ``NetworkDescriptor`` of a graph (see the module docstring).

    Attributes:
      layers: the main chain's weighted layers in order, each ``(kind, width)``, kind
        ``"conv"`` (width = filters) or ``"dense"`` (width = units).
      skips: each skip connection ``(from_position, to_position, "add" | "concat")``;
        a position is the number of main-chain weighted layers before the point, in
        ``[0, len(layers)]``, ``from_position <= to_position`` (strictly less for the
        skips the morphisms add, which always span a weighted layer).
    """

    layers: tuple[tuple[str, int], ...]
    skips: tuple[tuple[int, int, str], ...]


@functools.lru_cache(maxsize=4096)
def _natural_key(name: str):
    """Sort key: ``c2`` before ``c10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"([0-9]+)", name))


@dataclasses.dataclass(frozen=True)
class Graph:
    """A network as a DAG of :class:`Layer` (see the module docstring); frozen and hashable.

    Built from layers in any order; stored in a canonical topological order (ready layers
    taken by name, ``c2`` before ``c10``), so equal networks with equal names are equal.

    Raises:
      GraphError: (subclasses) an invalid layer or graph, named.
    """

    layers: tuple[Layer, ...]

    def __post_init__(self):
        layers = self.layers
        if isinstance(layers, Layer) or not isinstance(layers, tuple | list):
            raise GraphTypeError(f"a graph's layers must be a tuple of Layer, got {echo(layers)}")
        layers = tuple(layers)
        if not layers:
            raise GraphError("a graph needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise GraphTypeError(f"a graph's layers must be Layer objects, got {echo(layer)}")
        names = [x.name for x in layers]
        seen = set()
        for n in names:
            if n in seen:
                raise GraphError(f"layer name {n!r} is used twice")
            seen.add(n)
        for layer in layers:
            for i in layer.inputs:
                if i != INPUT and i not in seen:
                    raise GraphDanglingError(
                        f"layer {layer.name!r} reads {i!r}, which is not a layer of the graph"
                    )
        object.__setattr__(self, "layers", _topological(layers))
        unread = [x.name for x in self.layers if not self.consumers(x.name)]
        if len(unread) > 1:
            raise GraphDanglingError(
                f"layers {unread[:-1]} are never read: only the output layer "
                f"({unread[-1]!r}, the last) may be unread"
            )
        if not any(INPUT in x.inputs for x in self.layers):
            raise GraphDanglingError("no layer reads the image ('input')")
        shapes = self.shapes
        out = shapes[self.output]
        if out.is_map:
            raise GraphShapeError(
                f"the output layer {self.output!r} gives a feature map; the classifier needs a "
                "vector (end with gpool or dense)"
            )

    # -- structure -------------------------------------------------------------------------

    @functools.cached_property
    def by_name(self) -> dict[str, Layer]:
        return {x.name: x for x in self.layers}

    @functools.cached_property
    def _consumers(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {INPUT: []}
        for x in self.layers:
            out.setdefault(x.name, [])
            for i in x.inputs:
                out.setdefault(i, []).append(x.name)
        return {k: tuple(v) for k, v in out.items()}

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (KeyError naming it otherwise)."""
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"the graph has no layer {name!r}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.layers)

    def consumers(self, name: str) -> tuple[str, ...]:
        """The layers that read ``name`` (a layer or ``input``), in topological order."""
        return self._consumers.get(name, ())

    @property
    def output(self) -> str:
        """The layer the classifier reads (the one nobody else reads)."""
        return self.layers[-1].name

    @functools.cached_property
    def shapes(self) -> dict[str, Shape]:
        """Every tensor's :class:`Shape` (``input`` included); raises GraphShapeError."""
        shapes = {INPUT: Shape(0, None)}
        for x in self.layers:
            shapes[x.name] = _infer_shape(x, [shapes[i] for i in x.inputs])
        return shapes

    def channels(self, name: str) -> int | None:
        return self.shapes[name].channels

    @functools.cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        """Each layer's strict ancestors (``input`` included)."""
        anc: dict[str, frozenset[str]] = {INPUT: frozenset()}
        for x in self.layers:
            s = set()
            for i in x.inputs:
                s.add(i)
                s |= anc[i]
            anc[x.name] = frozenset(s)
        return anc

    @functools.cached_property
    def main_chain(self) -> tuple[str, ...]:
        """The longest path from ``input`` to the output (``input`` first); ties go to the
        first input of a layer (the main path of an add or concat)."""
        dist, pred = {INPUT: 0}, {}
        for x in self.layers:
            best = max(x.inputs, key=lambda i: dist[i])  # max keeps the first of equals
            dist[x.name], pred[x.name] = dist[best] + 1, best
        chain = [self.output]
        while chain[-1] != INPUT:
            chain.append(pred[chain[-1]])
        return tuple(reversed(chain))

    def descriptor(self) -> Descriptor:
        """The :class:`Descriptor` (Auto-Keras 0.2 ``extract_descriptor``; module docstring)."""
        chain = self.main_chain
        on_chain = set(chain)
        before, count = {}, 0  # weighted layers before (and, for 'upto', at) each chain node
        upto = {}
        layers = []
        for n in chain:
            before[n] = count
            if n != INPUT and self.by_name[n].kind in WEIGHTED:
                layer = self.by_name[n]
                layers.append((layer.kind, layer.width))
                count += 1
            upto[n] = count
        skips = []
        for k, n in enumerate(chain[1:], start=1):
            layer = self.by_name[n]
            if layer.kind not in MERGES:
                continue
            for i in layer.inputs:
                if i == chain[k - 1]:
                    continue
                src = i
                while src not in on_chain:  # back along the branch's first inputs
                    src = self.by_name[src].inputs[0]
                skips.append((upto[src], before[n], layer.kind))
        return Descriptor(tuple(layers), tuple(sorted(skips)))

    def num_params(self, num_classes: int, input_shape) -> int:
        """Trainable parameters of the network with a ``num_classes`` classifier on images
        of shape ``[H, W, C]`` (or the channel count ``C``); batch statistics not counted."""
        c_in = int(input_shape if np.ndim(input_shape) == 0 else input_shape[-1])
        total = 0
        for x in self.layers:
            cin = self.channels(x.inputs[0])
            cin = c_in if cin is None else cin
            if x.kind == "conv":
                total += x.kernel * x.kernel * cin * x.width + 2 * x.width
            elif x.kind == "dense":
                total += cin * x.width + x.width
            elif x.kind == "add":
                total += (len(x.inputs) - 1) * cin
        return total + self.channels(self.output) * int(num_classes) + int(num_classes)

    def to_text(self) -> str:
        return "; ".join(x.to_text() for x in self.layers)

    def __str__(self) -> str:
        return self.to_text()


def _check_layer(layer: Layer) -> None:
    """The checks of one layer on its own (run when it is made)."""
    name = layer.name
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name) and len(name) <= MAX_NAME):
        raise GraphSyntaxError(
            f"a layer name must match [a-z][a-z0-9_]* (at most {MAX_NAME} characters), "
            f"got {echo(name)}"
        )
    if name in RESERVED:
        raise GraphError(f"{name!r} is reserved and cannot name a layer")
    if layer.kind not in KINDS:
        raise UnknownLayerError(
            f"layer {name!r} has the unknown kind {echo(layer.kind)}; known: {list(KINDS)}"
        )
    if not isinstance(layer.inputs, tuple) or not all(isinstance(i, str) for i in layer.inputs):
        raise GraphTypeError(f"layer {name!r}: inputs must be a tuple of names")
    n = len(layer.inputs)
    if layer.kind in MERGES:
        if n < 2:
            raise GraphShapeError(f"{layer.kind} layer {name!r} needs two or more inputs, got {n}")
        if len(set(layer.inputs)) != n:
            raise GraphShapeError(f"{layer.kind} layer {name!r} reads an input twice")
    elif n != 1:
        raise GraphShapeError(f"{layer.kind} layer {name!r} reads exactly one input, got {n}")
    if name in layer.inputs:
        raise GraphCycleError(f"layer {name!r} reads itself")
    for field in ("width", "kernel"):
        v = getattr(layer, field)
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise GraphTypeError(f"layer {name!r}: {field} must be an int, got {echo(v)}")
    if layer.kind in WEIGHTED:
        if layer.width < 1:
            raise GraphRangeError(f"layer {name!r}: width must be >= 1, got {layer.width}")
    elif layer.width != 0:
        raise GraphRangeError(f"{layer.kind} layer {name!r} has no width (got {layer.width})")
    if layer.kind == "conv":
        if layer.kernel not in KERNELS:
            raise GraphRangeError(
                f"conv layer {name!r}: kernel must be one of {list(KERNELS)}, got {layer.kernel}"
            )
    elif layer.kernel != 0:
        raise GraphRangeError(f"{layer.kind} layer {name!r} has no kernel")


def _topological(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Kahn's algorithm, ready layers taken in natural name order; GraphCycleError."""
    by_name = {x.name: x for x in layers}
    indeg = {x.name: sum(i != INPUT for i in x.inputs) for x in layers}
    readers: dict[str, list[str]] = {}
    for x in layers:
        for i in x.inputs:
            readers.setdefault(i, []).append(x.name)
    ready = [(_natural_key(n), n) for n, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, n = heapq.heappop(ready)
        out.append(by_name[n])
        for r in readers.get(n, ()):
            indeg[r] -= 1
            if indeg[r] == 0:
                heapq.heappush(ready, (_natural_key(r), r))
    if len(out) != len(layers):
        stuck = sorted((n for n, d in indeg.items() if d > 0), key=_natural_key)
        raise GraphCycleError(f"the layers {stuck} read each other in a cycle")
    return tuple(out)


def _infer_shape(layer: Layer, ins: list[Shape]) -> Shape:
    name, kind = layer.name, layer.kind
    if kind in ("conv", *POOLS, "gpool"):
        if not ins[0].is_map:
            raise GraphShapeError(f"{kind} layer {name!r} reads a vector ({layer.inputs[0]!r})")
        if kind == "conv":
            return Shape(ins[0].level, layer.width)
        if kind == "gpool":
            if ins[0].channels is None:
                raise GraphShapeError(f"gpool layer {name!r} may not read the image directly")
            return Shape(None, ins[0].channels)
        return Shape(ins[0].level + 1, ins[0].channels)
    if kind == "dense":
        if ins[0].is_map:
            raise GraphShapeError(
                f"dense layer {name!r} reads a feature map ({layer.inputs[0]!r}); put a gpool "
                "before it"
            )
        return Shape(None, layer.width)
    # add / concat
    if any(s.channels is None for s in ins):
        raise GraphShapeError(f"{kind} layer {name!r} may not read the image ('input') directly")
    levels = {s.level for s in ins}
    if len(levels) != 1:
        raise GraphShapeError(
            f"{kind} layer {name!r} reads inputs of different spatial sizes: "
            + ", ".join(f"{i!r} ({_shape_text(s)})" for i, s in zip(layer.inputs, ins, strict=True))
        )
    if kind == "add":
        if len({s.channels for s in ins}) != 1:
            raise GraphShapeError(
                f"add layer {name!r} reads inputs of different channel counts: "
                + ", ".join(
                    f"{i!r} ({_shape_text(s)})" for i, s in zip(layer.inputs, ins, strict=True)
                )
            )
        return ins[0]
    return Shape(ins[0].level, sum(s.channels for s in ins))


def _shape_text(s: Shape) -> str:
    if not s.is_map:
        return f"a vector of {s.channels}"
    return f"{s.channels} channels after {s.level} pool(s)"


# -- text ------------------------------------------------------------------------------------

_LAYER_RE = re.compile(r"([a-z][a-z0-9_]*)=([a-z]+)([0-9]+(?:x[0-9]+)?)?<-([a-z0-9_,]+)")


_TEXT_ERRORS = TextErrors(
    syntax=GraphSyntaxError,
    non_ascii=GraphNonAsciiError,
    type=GraphTypeError,
    range=GraphRangeError,
)


def parse_graph(text) -> Graph:
    """Text form -> :class:`Graph` (module docstring), strict.

    Raises:
      GraphTypeError: not a ``str``.
      GraphSyntaxError: a layer not of the form ``name=op<-inputs`` (white space
        around a layer ignored), non-ASCII text, numbers with signs or leading zeros.
      UnknownLayerError: an op that is not a layer kind.
      GraphError: (subclasses) a graph that is not a valid network.
    """
    what = "a graph architecture string"
    text = check_text(text, what, _TEXT_ERRORS)
    layers = []
    for k, part in enumerate(p.strip(ASCII_SPACE) for p in text.split(";")):
        m = _LAYER_RE.fullmatch(part)
        if m is None:
            raise GraphSyntaxError(
                f"cannot parse layer {k} {echo(part)} of {echo(text)}: expected "
                "name=op<-input[,input...] with op conv{k}x{w}, dense{w}, maxpool, avgpool, "
                "gpool, add or concat"
            )
        name, op, nums, ins = m.groups()
        inputs = tuple(ins.split(","))
        if any(not _NAME_RE.fullmatch(i) for i in inputs):
            raise GraphSyntaxError(f"layer {name!r} has an empty or malformed input name")
        where = f"layer {name!r}"
        if op == "conv":
            parts = (nums or "").split("x")
            if len(parts) != 2:
                raise GraphSyntaxError(
                    f"{where}: expected conv{{kernel}}x{{width}}, got {op}{nums or ''}"
                )
            kernel, width = (
                parse_int(p, f"{where}'s {f}", _TEXT_ERRORS)
                for p, f in zip(parts, ("kernel", "width"), strict=True)
            )
            layers.append(Layer(name, "conv", inputs, width, kernel))
        elif op == "dense":
            if nums is None or "x" in nums:
                raise GraphSyntaxError(f"{where}: expected dense{{width}}, got {op}{nums or ''}")
            layers.append(
                Layer(name, "dense", inputs, parse_int(nums, f"{where}'s width", _TEXT_ERRORS))
            )
        elif op in KINDS:
            if nums is not None:
                raise GraphSyntaxError(f"{where}: {op} takes no numbers, got {op}{nums}")
            layers.append(Layer(name, op, inputs))
        else:
            raise UnknownLayerError(f"{where} has the unknown op {op!r}; known: {list(KINDS)}")
    return Graph(tuple(layers))


# -- the space ---------------------------------------------------------------------------------

# Auto-Keras 0.3's CnnGenerator (model_len 3, model_width 64: three conv blocks, each followed
# by a pool, then global pooling and a dense layer), scaled down to width 16.
DEFAULT_START = (
    "c0=conv3x16<-input; p0=maxpool<-c0; c1=conv3x16<-p0; p1=maxpool<-c1; "
    "c2=conv3x16<-p1; p2=maxpool<-c2; g0=gpool<-p2; d0=dense16<-g0"
)


@SPACES.register("graph")
@dataclasses.dataclass(frozen=True)
class GraphSpace(SearchSpace):
    """The Auto-Keras graph space (module docstring), a :class:`SearchSpace` searched by
    morphisms.

    Attributes:
      start: the start network's text form (default: Auto-Keras's CnnGenerator, scaled
        down).
      max_layers: the most layers a graph may have (the classifier not counted).
      max_params: the most trainable parameters a graph may have, counted for
        ``num_classes`` classes on images of ``input_channels`` channels.
      num_classes, input_channels: the data the size limit is counted for.
      kernels: the kernel sizes the deeper morphism inserts.
      random_edits: :meth:`random_graph` applies 0 to this many random morphisms.
    """

    start: str = DEFAULT_START
    max_layers: int = 40
    max_params: int = 1_000_000
    num_classes: int = 10
    input_channels: int = 3
    kernels: tuple[int, ...] = KERNELS
    random_edits: int = 8

    name: ClassVar[str] = "graph"

    def __post_init__(self):
        for field in ("max_layers", "max_params", "num_classes", "input_channels"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"graph space's {field} must be an int >= 1, got {v!r}")
        if (
            isinstance(self.random_edits, bool)
            or not isinstance(self.random_edits, int)
            or (self.random_edits < 0)
        ):
            raise ValueError(
                f"graph space's random_edits must be an int >= 0, got {self.random_edits!r}"
            )
        kernels = tuple(self.kernels)
        if (
            not kernels
            or any(k not in KERNELS for k in kernels)
            or len(set(kernels)) != len(kernels)
        ):
            raise ValueError(
                f"graph space's kernels must be distinct values of {KERNELS}, got {kernels!r}"
            )
        object.__setattr__(self, "kernels", kernels)
        self.check(self.start_graph(), what="the start network")

    # -- the protocol ----------------------------------------------------------------------

    @property
    def spec(self):
        raise GraphHasNoVectorError(
            "the graph space has no fixed-length decision vector: it is searched by network "
            "morphisms (jnas.spaces.morphism), not by the discrete strategies"
        )

    def encode(self, obj):
        return self.spec

    def decode(self, arch):
        return self.spec

    def to_text(self, arch) -> str:
        """:class:`Graph` -> its text form."""
        return self.as_graph(arch).to_text()

    def parse(self, text) -> Graph:
        """Text form -> :class:`Graph` within this space's limits (:func:`parse_graph`;
        :class:`GraphLimitError` over a limit)."""
        return self.check(parse_graph(text))

    def as_graph(self, arch) -> Graph:
        """``arch`` as a Graph (a Graph, or its text); GraphTypeError otherwise."""
        if isinstance(arch, Graph):
            return arch
        if isinstance(arch, str):
            return self.parse(arch)
        raise GraphTypeError(f"expected a Graph or its text, got {type(arch).__name__}")

    # -- limits and members ----------------------------------------------------------------

    def num_params(self, graph: Graph) -> int:
        """The graph's trainable parameters for this space's classes and input channels."""
        return graph.num_params(self.num_classes, self.input_channels)

    def check(self, graph: Graph, what: str = "the graph") -> Graph:
        """``graph`` if within the limits; :class:`GraphLimitError` naming the limit."""
        if len(graph.layers) > self.max_layers:
            raise GraphLimitError(
                f"{what} has {len(graph.layers)} layers, over the limit max_layers = "
                f"{self.max_layers}"
            )
        n = self.num_params(graph)
        if n > self.max_params:
            raise GraphLimitError(
                f"{what} has {n} parameters, over the limit max_params = {self.max_params}"
            )
        return graph

    def within_limits(self, graph: Graph) -> bool:
        return len(graph.layers) <= self.max_layers and self.num_params(graph) <= self.max_params

    def start_graph(self) -> Graph:
        """The start network (``start``, parsed)."""
        return parse_graph(self.start)

    def random_graph(self, key) -> Graph:
        """A random member: ``n`` random morphisms of the start network, ``n`` uniform in
        ``[0, random_edits]``, each drawn uniformly among
        :func:`~jnas.spaces.morphism.possible_edits` (so always within the limits).

        The draws come from a numpy generator seeded with ``key``'s data (the same key, the
        same graph; no XLA compilation)."""
        from jnas.spaces import morphism

        rng = host_rng(key)
        graph = self.start_graph()
        for _ in range(int(rng.integers(0, self.random_edits + 1))):
            edits = morphism.possible_edits(self, graph)
            if not edits:
                break
            graph = morphism.apply_edit(self, graph, edits[int(rng.integers(len(edits)))])
        return graph

    # -- networks --------------------------------------------------------------------------

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None) -> GraphNet:
        """The Flax module of ``arch`` (a Graph or its text); a fidelity's ``width``
        multiplies every conv and dense width (rounded, at least 1)."""
        graph = self.as_graph(arch)
        width = 1.0 if fidelity is None else float(fidelity.width)
        if width != 1.0:
            graph = scale_widths(graph, width)
        return GraphNet(graph, int(num_classes))

    def train_child(
        self,
        arch,
        train_arrays,
        val_arrays,
        *,
        fidelity=None,
        config=None,
        key,
        monitor=None,
        init_variables=None,
        return_variables: bool = False,
    ):
        """Trains ``network(arch)`` (:func:`jnas.spaces.child.train_space_child`), from
        ``init_variables`` (a parent's, morphed: :func:`jnas.spaces.morphism.morph_variables`)
        when given, else from a fresh initialisation.

        Returns the validation accuracy, or, with a ``monitor`` or ``return_variables``, the
        :class:`~jnas.spaces.child.ChildResult` (its ``variables`` the trained ones when
        ``return_variables``).
        """
        from jnas.spaces import child

        return child.train_space_child(
            self,
            self.as_graph(arch),
            train_arrays,
            val_arrays,
            fidelity=fidelity,
            config=config,
            key=key,
            monitor=monitor,
            init_variables=init_variables,
            return_variables=return_variables,
        )

    def draw(self, arch, out_dir: str, *, formats=("png", "svg"), backend: str = "auto"):
        """Pictures of ``arch`` (a Graph or its text) in ``out_dir``: :func:`draw_graph`."""
        return draw_graph(self.as_graph(arch), out_dir, formats=formats, backend=backend)


def host_rng(key) -> np.random.Generator:
    """A numpy generator seeded with the data of the PRNG key ``key`` (host draws of graph
    structure, which jax.random would compile for every new shape)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def scale_widths(graph: Graph, factor: float) -> Graph:
    """The graph with every conv and dense width multiplied by ``factor`` (rounded, >= 1)."""
    return Graph(
        tuple(
            dataclasses.replace(x, width=max(1, int(round(x.width * factor))))
            if x.kind in WEIGHTED
            else x
            for x in graph.layers
        )
    )


# -- the Flax network ---------------------------------------------------------------------------


class ConvBlock(nn.Module):
    """conv (no bias, SAME) -> batch norm -> ReLU."""

    width: int
    kernel: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(
            self.width, (self.kernel, self.kernel), padding="SAME", use_bias=False, name="conv"
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="bn"
        )(x)
        return nn.relu(x)


class DenseBlock(nn.Module):
    """dense -> ReLU."""

    width: int

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(self.width, name="dense")(x))


class AddLayer(nn.Module):
    """``relu(x_0 + sum_k scale[k - 1] * x_k)``; ``scale`` ``[inputs - 1, channels]`` starts
    at ones (a morphism's new skip sets it to zeros)."""

    @nn.compact
    def __call__(self, xs):
        scale = self.param(
            "scale", nn.initializers.ones, (len(xs) - 1, xs[0].shape[-1]), jnp.float32
        )
        out = xs[0]
        for k, x in enumerate(xs[1:]):
            out = out + scale[k] * x
        return nn.relu(out)


class GraphNet(nn.Module):
    """The network of a :class:`Graph` (module docstring), ``apply(vars, images, train=...)``
    on NHWC float images -> logits ``[N, num_classes]``."""

    graph: Graph
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = {INPUT: x}
        for layer in self.graph.layers:
            ins = [out[i] for i in layer.inputs]
            kind = layer.kind
            if kind == "conv":
                h = ConvBlock(layer.width, layer.kernel, name=layer.name)(ins[0], train)
            elif kind == "dense":
                h = DenseBlock(layer.width, name=layer.name)(ins[0])
            elif kind == "maxpool":
                h = nn.max_pool(ins[0], (2, 2), strides=(2, 2), padding="SAME")
            elif kind == "avgpool":
                h = nn.avg_pool(
                    ins[0], (2, 2), strides=(2, 2), padding="SAME", count_include_pad=False
                )
            elif kind == "gpool":
                h = jnp.mean(ins[0], axis=(1, 2))
            elif kind == "add":
                h = AddLayer(name=layer.name)(ins)
            else:  # concat
                h = jnp.concatenate(ins, axis=-1)
            out[layer.name] = h
        return nn.Dense(self.num_classes, name=CLASSIFIER)(out[self.graph.output])


# -- pictures -----------------------------------------------------------------------------------

_KIND_FILL = {  # Graphviz colour names; matplotlib's below are the same colours
    "input": "darkseagreen2",
    "conv": "lightblue",
    "dense": "lightblue",
    "maxpool": "lightgray",
    "avgpool": "lightgray",
    "gpool": "lightgray",
    "add": "palegoldenrod",
    "concat": "palegoldenrod",
    "output": "darkseagreen2",
}
_KIND_MPL = {**_KIND_FILL, "input": "#b4eeb4", "output": "#b4eeb4"}


def picture_graph(graph: Graph):
    """Nodes ``(name, label, kind)`` (``input`` first, ``classifier`` last) and edges
    ``(source, target, is_main)`` of the picture; ``is_main``: on the main chain."""
    nodes = [(INPUT, "input", "input")]
    nodes += [(x.name, f"{x.name}: {x.op_text()}", x.kind) for x in graph.layers]
    nodes.append((CLASSIFIER, "classifier", "output"))
    chain = graph.main_chain + (CLASSIFIER,)
    main = set(zip(chain[:-1], chain[1:], strict=True))
    edges = [(i, x.name, (i, x.name) in main) for x in graph.layers for i in x.inputs]
    edges.append((graph.output, CLASSIFIER, True))
    return nodes, edges


def graph_dot(graph: Graph) -> str:
    """The Graphviz DOT source of the graph (styled like :mod:`jnas.spaces.draw`'s cells):
    top to bottom, skip connections dashed."""
    nodes, edges = picture_graph(graph)
    lines = [
        "digraph network {",
        "  rankdir=TB;",
        '  node [style="rounded,filled", shape=rect, align=center, fontsize=16, height=0.4,'
        ' penwidth=2, fontname="times"];',
        "  edge [penwidth=1.5];",
    ]
    for name, label, kind in nodes:
        lines.append(f'  "{name}" [label="{label}", fillcolor={_KIND_FILL[kind]}];')
    for src, dst, is_main in edges:
        lines.append(
            f'  "{src}" -> "{dst}"' + ("" if is_main else " [style=dashed, color=gray40]") + ";"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_graph_matplotlib(graph: Graph, paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jnas.spaces.draw import node_box, save_figure

    nodes, edges = picture_graph(graph)
    depth = {INPUT: 0}
    for x in graph.layers:
        depth[x.name] = 1 + max(depth[i] for i in x.inputs)
    depth[CLASSIFIER] = depth[graph.output] + 1
    # The main chain (the longest path: a node's depth is its place on it) down column 0,
    # the other layers to its right at their depth.
    on_chain = set(graph.main_chain) | {CLASSIFIER}
    rows: dict[int, list[str]] = {}
    for name, _, _ in nodes:
        rows.setdefault(depth[name], []).append(name)
    pos = {}
    for d, names in rows.items():
        off = [n for n in names if n not in on_chain]
        for name in names:
            col = 0 if name in on_chain else 1 + off.index(name)
            pos[name] = (2.6 * col, -1.0 * d)
    wide = max(map(len, rows.values()))
    fig, ax = plt.subplots(figsize=(2.6 * wide + 2, 0.6 * len(rows) + 1))
    for src, dst, is_main in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="-|>",
                color="black" if is_main else "gray",
                lw=1.2,
                ls="-" if is_main else "--",
                shrinkA=9,
                shrinkB=9,
                connectionstyle=f"arc3,rad={0.0 if is_main else 0.2}",
            ),
        )
    for name, label, kind in nodes:
        node_box(ax, pos[name], label, _KIND_MPL[kind], fontsize=9, lw=1.2)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 2, max(xs) + 2)
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.axis("off")
    save_figure(fig, paths)


def draw_graph(
    graph: Graph, out_dir: str, *, formats: tuple[str, ...] = ("png", "svg"), backend: str = "auto"
) -> list[str]:
    """Renders ``graph`` into ``out_dir`` (created if missing): ``graph.dot`` and
    ``graph.<fmt>`` per format, with Graphviz where it is installed, else matplotlib (as
    :func:`jnas.spaces.draw.draw_genotype`).

    Args:
      graph: the graph.
      out_dir: the directory.
      formats: image formats (``png``, ``svg``, ``pdf``).
      backend: ``"auto"``, ``"graphviz"`` or ``"matplotlib"``.

    Returns:
      The paths written, the DOT source first.
    """
    from jnas.spaces.draw import render

    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a Graph, got {type(graph).__name__}")
    return render(
        graph_dot(graph),
        out_dir,
        "graph",
        formats,
        backend,
        lambda paths: _render_graph_matplotlib(graph, paths),
    )
