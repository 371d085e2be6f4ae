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

Example:
  >>> a = parse("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
  >>> a.tolist(), op_code(a)
  ([3, 0, 3, 1, 0, 1], '303101')
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jnas.spaces import discrete
from jnas.spaces.discrete import ArchitectureError, Categorical, DecisionSpec

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES = tuple((i, j) for i in range(1, NUM_NODES) for j in range(i))  # (to, from), string order
NUM_ARCHS = len(OPS) ** len(EDGES)

# A genotype: for each node 1..3, a tuple of (op, source) pairs, sources 0..i-1 in order.
Genotype = tuple[tuple[tuple[str, int], ...], ...]


@dataclasses.dataclass(frozen=True)
class NB201Space:
    """The NAS-Bench-201 space; satisfies `jnas.spaces.discrete.DiscreteSpace`."""

    @property
    def spec(self) -> DecisionSpec:
        return DecisionSpec(tuple(Categorical(f"{i}<-{j}", OPS) for i, j in EDGES))

    def encode(self, genotype: Genotype) -> np.ndarray:
        """Genotype `((("op", 0),), (("op", 0), ("op", 1)), ...)` -> int32 vector `[6]`."""
        if len(genotype) != NUM_NODES - 1:
            raise ArchitectureError(f"genotype has {len(genotype)} nodes, expected {NUM_NODES - 1}")
        ops = {}
        for i, node in enumerate(genotype, start=1):
            sources = sorted(int(j) for _, j in node)
            if sources != list(range(i)):
                raise ArchitectureError(
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

        Raises:
          ArchitectureError: naming what is wrong (layout, an unknown op, a bad source node).
        """
        if not isinstance(text, str):
            raise ArchitectureError(f"expected an architecture string, got {type(text).__name__}")
        parts = text.strip().split("+")
        if len(parts) != NUM_NODES - 1:
            raise ArchitectureError(
                f"cannot parse NAS-Bench-201 arch string {text!r}: it has {len(parts)} "
                f"'+'-separated nodes, expected {NUM_NODES - 1} "
                "(form: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
            )
        genotype = []
        for i, part in enumerate(parts, start=1):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise ArchitectureError(
                    f"cannot parse NAS-Bench-201 arch string {text!r}: node {i} {part!r} "
                    "is not of the form |op~j|...|"
                )
            node = []
            for token in part[1:-1].split("|"):
                op, sep, src = token.partition("~")
                if not sep or not src.isdigit():
                    raise ArchitectureError(
                        f"cannot parse NAS-Bench-201 arch string {text!r}: edge {token!r} "
                        f"of node {i} is not of the form op~j"
                    )
                _op_index(op, f"{i}<-{src}")
                node.append((op, int(src)))
            genotype.append(tuple(node))
        return self.encode(tuple(genotype))


def _op_index(op: str, edge: str) -> int:
    if op not in OPS:
        raise ArchitectureError(f"unknown op {op!r} on edge {edge}; the ops are {list(OPS)}")
    return OPS.index(op)


SPACE = NB201Space()
SPEC = SPACE.spec
encode, decode, to_text, parse = SPACE.encode, SPACE.decode, SPACE.to_text, SPACE.parse


def op_code(arch) -> str:
    """The table's 6-character op code: one digit per edge in string order."""
    return "".join(str(x) for x in SPEC.validate(arch).tolist())


def from_op_code(code: str) -> np.ndarray:
    """The inverse of `op_code`."""
    if not (isinstance(code, str) and len(code) == len(EDGES) and code.isdigit()):
        raise ArchitectureError(f"op_code {code!r} is not {len(EDGES)} digits")
    return SPEC.validate([int(c) for c in code])


def to_code(arch: jax.Array) -> jax.Array:
    """The base-5 integer of the op code, in [0, 15625): the row of a code-ordered table.

    Pure and jit-compatible; `to_code(parse(s)) == int(op_code(parse(s)), 5)`.
    """
    return discrete.to_code(SPEC, arch)


def from_code(code: jax.Array) -> jax.Array:
    """The inverse of `to_code` (jit-compatible)."""
    return discrete.from_code(SPEC, code)
