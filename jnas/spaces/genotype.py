"""The ``Genotype`` of a DARTS-style cell: its text form, parsing and validation.

A genotype lists, for each intermediate node of the normal and of the reduction cell, its
incoming edges as ``(op_name, input_index)`` pairs, two per node in DARTS. Input 0 and 1 are
the outputs of the two previous cells, input ``i >= 2`` is intermediate node ``i - 2``. The
cell's output concatenates the states listed in ``*_concat``.

The text form is the one the DARTS code prints and researchers paste around::

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

:meth:`Genotype.parse` reads it back (also ``range(2, 6)`` as the DARTS code writes it)
without ``eval``, and :meth:`Genotype.validate` rejects forward or out-of-range indices,
unknown ops and odd edge counts, with a message that names the problem.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Sequence

from jnas.ops.primitives import UnknownOpError, known_ops
from jnas.spaces.discrete import ArchitectureError


class MalformedGenotypeError(ArchitectureError):
    """A genotype text or value that does not describe a valid cell pair."""


Edge = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A pair of discrete cells (normal and reduction)."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        # Normalise lists (from JSON or literals) into hashable tuples.
        for field in ("normal", "reduce"):
            edges = tuple((str(op), int(i)) for op, i in getattr(self, field))
            object.__setattr__(self, field, edges)
        for field in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, field, tuple(int(i) for i in getattr(self, field)))

    def __str__(self) -> str:
        def edges(es):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in es) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        return {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Parse the DARTS text form; raise :class:`MalformedGenotypeError` on bad input."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as e:
            raise MalformedGenotypeError(f"genotype text is not valid syntax: {e.msg}") from e
        if not (
            isinstance(tree, ast.Call)
            and isinstance(tree.func, ast.Name)
            and tree.func.id == "Genotype"
        ):
            raise MalformedGenotypeError(
                "genotype text must look like Genotype(normal=[...], normal_concat=[...], "
                f"reduce=[...], reduce_concat=[...]); got {text[:80]!r}"
            )
        fields = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for pos, arg in enumerate(tree.args):
            if pos >= len(fields):
                raise MalformedGenotypeError("genotype has too many positional fields")
            values[fields[pos]] = arg
        for kw in tree.keywords:
            if kw.arg not in fields:
                raise MalformedGenotypeError(
                    f"unknown genotype field {kw.arg!r}; expected {', '.join(fields)}"
                )
            values[kw.arg] = kw.value
        missing = [f for f in fields if f not in values]
        if missing:
            raise MalformedGenotypeError(f"genotype is missing field(s): {', '.join(missing)}")
        parsed = {name: _literal(node, name) for name, node in values.items()}
        try:
            genotype = cls(**parsed)
        except (TypeError, ValueError) as e:
            raise MalformedGenotypeError(f"genotype fields have the wrong shape: {e}") from e
        genotype.validate()
        return genotype

    def validate(self, ops: Sequence[str] | None = None) -> Genotype:
        """Check ops and indices; return ``self`` (raises :class:`MalformedGenotypeError`)."""
        ops = tuple(known_ops() if ops is None else ops)
        for cell in ("normal", "reduce"):
            edges = getattr(self, cell)
            concat = getattr(self, f"{cell}_concat")
            if not edges or len(edges) % 2:
                raise MalformedGenotypeError(
                    f"{cell} cell needs two edges per node, got {len(edges)} edges"
                )
            n_nodes = len(edges) // 2
            for k, (op, idx) in enumerate(edges):
                node = k // 2
                if op not in ops:
                    raise UnknownOpError(
                        f"{cell} cell, node {node}: unknown op {op!r}; known ops: "
                        f"{', '.join(sorted(ops))}"
                    )
                if not 0 <= idx < node + 2:
                    raise MalformedGenotypeError(
                        f"{cell} cell, node {node} (state {node + 2}): input index {idx} must "
                        f"be in [0, {node + 1}] (inputs may only come from earlier states)"
                    )
            if not concat or any(not 0 <= i < n_nodes + 2 for i in concat):
                raise MalformedGenotypeError(
                    f"{cell}_concat {list(concat)} must list states in [0, {n_nodes + 1}]"
                )
        return self


def _literal(node: ast.AST, name: str):
    # range(a, b) as written by the DARTS code's genotypes.py.
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            return list(range(*[ast.literal_eval(a) for a in node.args]))
        except (ValueError, TypeError) as e:
            raise MalformedGenotypeError(f"{name}: bad range(...)") from e
    try:
        return ast.literal_eval(node)
    except ValueError as e:
        raise MalformedGenotypeError(f"{name} must be a literal list, got {ast.dump(node)}") from e


def load_genotype(spec: str, named: dict[str, Genotype] | None = None) -> Genotype:
    """Resolve a genotype given by name, by text, or by a path to a file holding its text.

    Args:
      spec: a name from ``named`` (e.g. ``"DARTS_V2"``), a ``Genotype(...)`` text, or the path
        of a file written by a search (``genotype.txt``).
      named: the known named genotypes.

    Returns:
      The validated genotype.
    """
    named = named or {}
    spec = spec.strip()
    if spec in named:
        return named[spec]
    if spec.startswith("Genotype("):
        return Genotype.parse(spec)
    if os.path.exists(spec):
        with open(spec) as f:
            return Genotype.parse(f.read())
    raise MalformedGenotypeError(
        f"{spec!r} is neither a known genotype name ({', '.join(sorted(named))}), a "
        "Genotype(...) text, nor an existing file"
    )
