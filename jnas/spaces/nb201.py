"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020) as a sequence of decisions.

A cell has 4 nodes; node i (i = 1, 2, 3) sums one operation on each earlier node j < i, so there
are 6 edges, each choosing one of 5 operations: 5^6 = 15,625 architectures. The decisions are the
edges in the order of the official architecture string

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
     1<-0   2<-0 2<-1   3<-0 3<-1 3<-2

and an architecture is the int vector of the 6 operation indices. The operation order is the
benchmark's (and NASLib's): 0=none, 1=skip_connect, 2=nor_conv_1x1, 3=nor_conv_3x3,
4=avg_pool_3x3, so the table's 6-digit `op_code` is the vector's digits, and reading it in base 5
gives `to_code`, the index a tabular lookup gathers with inside jit.

The space registers as ``"nb201"`` (:data:`jnas.spaces.base.SPACES`). Its ``network`` is
the NAS-Bench-201 network of the paper (Dong & Yang 2020, Sec. 2; their ``TinyNetwork``): a
3x3 convolution stem to C channels with batch norm, three stages of N cells at C, 2C and 4C
channels with a residual reduction block (ResNet basic block, stride 2) between stages, then
batch norm, ReLU, global average pooling and a linear classifier; C = 16, N = 5 give the
table's parameter counts (``c10_params_m``). ``load_table`` reads the benchmark's table
(:mod:`jnas.tabular.nb201`).

Example:
  >>> a = parse("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
  >>> a.tolist(), op_code(a)
  ([3, 0, 3, 1, 0, 1], '303101')
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.ops import layers, primitives
from jnas.spaces import discrete
from jnas.spaces.base import SPACES, Fidelity, SearchSpace
from jnas.spaces.discrete import (
    ArchitectureError,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    Categorical,
    DecisionSpec,
    UnknownChoiceError,
)
from jnas.spaces.text import check_text, echo, parse_int

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES = tuple((i, j) for i in range(1, NUM_NODES) for j in range(i))  # (to, from), string order
NUM_ARCHS = len(OPS) ** len(EDGES)

# A genotype: for each node 1..3, a tuple of (op, source) pairs, sources 0..i-1 in order.
Genotype = tuple[tuple[tuple[str, int], ...], ...]


@SPACES.register("nb201")
@dataclasses.dataclass(frozen=True)
class NB201Space(SearchSpace):
    """The NAS-Bench-201 space (a :class:`~jnas.spaces.base.SearchSpace` with a table).

    Attributes:
      channels: C, the channels of the first stage (the benchmark: 16); a fidelity's
        ``width`` multiplies it.
      cells_per_stage: N, the cells of each of the three stages (the benchmark: 5).

    The options shape the network only: the decisions, and the table, are the same for all.
    """

    channels: int = 16
    cells_per_stage: int = 5

    name: ClassVar[str] = "nb201"

    def __post_init__(self):
        if int(self.channels) < 1 or int(self.cells_per_stage) < 1:
            raise ValueError(
                f"NB201Space needs channels >= 1 and cells_per_stage >= 1, got "
                f"{self.channels} and {self.cells_per_stage}"
            )

    @property
    def spec(self) -> DecisionSpec:
        return DecisionSpec(tuple(Categorical(f"{i}<-{j}", OPS) for i, j in EDGES))

    def encode(self, genotype: Genotype) -> np.ndarray:
        """Genotype `((("op", 0),), (("op", 0), ("op", 1)), ...)` -> int32 vector `[6]`."""
        if not isinstance(genotype, tuple | list):
            raise ArchitectureTypeError(
                f"expected a genotype (a tuple of nodes), got {type(genotype).__name__}"
            )
        if len(genotype) != NUM_NODES - 1:
            raise ArchitectureRangeError(
                f"genotype has {len(genotype)} nodes, expected {NUM_NODES - 1}"
            )
        ops = {}
        for i, node in enumerate(genotype, start=1):
            if not isinstance(node, tuple | list) or not all(
                isinstance(e, tuple | list) and len(e) == 2 for e in node
            ):
                raise ArchitectureTypeError(
                    f"node {i} must be a tuple of (op, source) pairs, got {echo(node)}"
                )
            if not all(_is_int(j) for _, j in node):
                raise ArchitectureTypeError(
                    f"node {i}: a source must be an int, got {echo([j for _, j in node])}"
                )
            sources = sorted(int(j) for _, j in node)
            if sources != list(range(i)):
                raise ArchitectureRangeError(
                    f"node {i} has inputs from {sources}, expected each of {list(range(i))} once"
                )
            for op, j in node:
                ops[(i, int(j))] = _op_index(op, f"{i}<-{j}")
        return np.asarray([ops[e] for e in EDGES], np.int32)

    def decode(self, arch) -> Genotype:
        """int vector `[6]` -> genotype (see `encode`)."""
        a = self.spec.validate(arch)
        by_edge = dict(zip(EDGES, a.tolist(), strict=True))
        return tuple(
            tuple((OPS[by_edge[(i, j)]], j) for j in range(i)) for i in range(1, NUM_NODES)
        )

    def to_text(self, arch) -> str:
        """The official architecture string, e.g. `|nor_conv_3x3~0|+|none~0|...|`."""
        return "+".join(
            "|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in self.decode(arch)
        )

    def parse(self, text: str) -> np.ndarray:
        """Official architecture string -> int32 vector `[6]`.

        Strict: ASCII only, surrounding white space aside nothing but the three
        ``|op~j|...|`` nodes joined by ``+``; a source ``j`` is ASCII decimal digits without
        sign or leading zeros; each node reads each earlier node once (in any order).

        Raises:
          ArchitectureSyntaxError: the layout (``NonAsciiTextError`` for a Unicode digit or
            any other non-ASCII character), an empty or absurdly long text.
          ArchitectureTypeError: ``text`` is not a ``str``.
          UnknownChoiceError: an op that is not one of :data:`OPS`.
          ArchitectureRangeError: a node that does not read each earlier node exactly once.
        """
        what = "a NAS-Bench-201 architecture string"
        text = check_text(text, what)
        form = "(form: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
        parts = text.split("+")
        if len(parts) != NUM_NODES - 1:
            raise ArchitectureSyntaxError(
                f"cannot parse {what} {echo(text)}: it has {len(parts)} '+'-separated nodes, "
                f"expected {NUM_NODES - 1} {form}"
            )
        genotype = []
        for i, part in enumerate(parts, start=1):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise ArchitectureSyntaxError(
                    f"cannot parse {what} {echo(text)}: node {i} {echo(part)} is not of the "
                    f"form |op~j|...| {form}"
                )
            node = []
            for token in part[1:-1].split("|"):
                op, sep, src = token.partition("~")
                if not sep:
                    raise ArchitectureSyntaxError(
                        f"cannot parse {what} {echo(text)}: edge {echo(token)} of node {i} is "
                        "not of the form op~j"
                    )
                j = parse_int(src, f"the source node of edge {echo(token)} of node {i}")
                _op_index(op, f"{i}<-{j}")
                node.append((op, j))
            genotype.append(tuple(node))
        return self.encode(tuple(genotype))

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None) -> TinyNetwork:
        """The NAS-Bench-201 network of ``arch`` (an int vector or a genotype).

        A fidelity's ``width`` multiplies C (rounded, at least 1).
        """
        is_genotype = isinstance(arch, tuple) and bool(arch) and isinstance(arch[0], tuple)
        genotype = self.decode(self.encode(arch) if is_genotype else arch)
        width = 1.0 if fidelity is None else float(fidelity.width)
        return TinyNetwork(
            genotype,
            num_classes=int(num_classes),
            channels=max(1, int(round(self.channels * width))),
            cells_per_stage=int(self.cells_per_stage),
        )

    def load_table(self, path=None):
        """The benchmark's table (:func:`jnas.tabular.nb201.load_table`; ``path`` None reads
        ``$JNAS_NB201_PATH``)."""
        from jnas.tabular.nb201 import load_table  # jnas.tabular imports this module

        return load_table(path)


class NB201Cell(nn.Module):
    """A cell of a fixed architecture (NAS-Bench-201's ``InferCell``): node i is the sum over
    j < i of op(node j); the cell's output is node 3. ``none`` edges add nothing (a node whose
    edges are all ``none`` is zero), convolutions are ReLU-Conv-BN, the pool is 3x3 average
    pooling that excludes the padding."""

    genotype: Genotype
    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.shape[-1] != self.features:
            raise ValueError(f"a cell maps {self.features} channels, got {x.shape[-1]}")
        nodes = [x]
        for node in self.genotype:
            terms = [_edge_op(op, self.features)(nodes[j], train) for op, j in node if op != "none"]
            nodes.append(sum(terms[1:], terms[0]) if terms else jnp.zeros_like(x))
        return nodes[-1]


def _edge_op(op: str, features: int) -> nn.Module:
    if op == "skip_connect":
        return primitives.Identity()
    if op == "nor_conv_1x1":
        return primitives.ReLUConvBN(features, 1, 1, 0)
    if op == "nor_conv_3x3":
        return primitives.ReLUConvBN(features, 3, 1, 1)
    if op == "avg_pool_3x3":
        return primitives.Pool("avg", 1)
    raise ArchitectureError(f"unknown op {op!r}; the ops are {list(OPS)}")


class ResidualReduction(nn.Module):
    """NAS-Bench-201's stage transition (ResNet basic block, stride 2): ReLU-Conv3x3(s2)-BN,
    ReLU-Conv3x3-BN, plus a shortcut of 2x2 average pooling and a 1x1 convolution."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(
                f"the NAS-Bench-201 reduction block needs even spatial sizes, got "
                f"{x.shape[1]}x{x.shape[2]} (the 2x2 pool and the stride-2 conv would disagree)"
            )
        h = primitives.ReLUConvBN(self.features, 3, 2, 1)(x, train)
        h = primitives.ReLUConvBN(self.features, 3, 1, 1)(h, train)
        shortcut = layers.Conv2d(self.features, (1, 1))(layers.avg_pool(x, 2, 2, 0))
        return shortcut + h


class TinyNetwork(nn.Module):
    """The NAS-Bench-201 network of one fixed cell (see the module docstring).

    Attributes:
      genotype: the cell (``NB201Space.decode``), shared by every cell of the network.
      num_classes: outputs of the classifier.
      channels: C of the first stage.
      cells_per_stage: N.
    """

    genotype: Genotype
    num_classes: int
    channels: int = 16
    cells_per_stage: int = 5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """NHWC float images -> logits ``[N, num_classes]``."""
        c = self.channels
        x = layers.Conv2d(c, (3, 3), padding=(1, 1))(x)
        x = layers.batch_norm(True, None)(x, use_running_average=not train)
        for stage in range(3):
            if stage:
                x = ResidualReduction(c * 2**stage)(x, train)
            for _ in range(self.cells_per_stage):
                x = NB201Cell(self.genotype, c * 2**stage)(x, train)
        x = layers.batch_norm(True, None)(x, use_running_average=not train)
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        return layers.Dense(self.num_classes)(x)


def _op_index(op: str, edge: str) -> int:
    if not isinstance(op, str) or op not in OPS:
        raise UnknownChoiceError(f"unknown op {echo(op)} on edge {edge}; the ops are {list(OPS)}")
    return OPS.index(op)


def _is_int(x) -> bool:
    """A Python or numpy int (never a bool, a float or a str)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


SPACE = NB201Space()
SPEC = SPACE.spec
encode, decode, to_text, parse = SPACE.encode, SPACE.decode, SPACE.to_text, SPACE.parse


def op_code(arch) -> str:
    """The table's 6-character op code: one digit per edge in string order."""
    return "".join(str(x) for x in SPEC.validate(arch).tolist())


def from_op_code(code: str) -> np.ndarray:
    """The inverse of `op_code`."""
    if not (
        isinstance(code, str) and len(code) == len(EDGES) and code.isascii() and code.isdigit()
    ):
        raise ArchitectureSyntaxError(f"op_code {echo(code)} is not {len(EDGES)} ASCII digits")
    return SPEC.validate([int(c) for c in code])


def to_code(arch: jax.Array) -> jax.Array:
    """The base-5 integer of the op code, in [0, 15625): the row of a code-ordered table.

    Pure and jit-compatible; `to_code(parse(s)) == int(op_code(parse(s)), 5)`.
    """
    return discrete.to_code(SPEC, arch)


def from_code(code: jax.Array) -> jax.Array:
    """The inverse of `to_code` (jit-compatible)."""
    return discrete.from_code(SPEC, code)
