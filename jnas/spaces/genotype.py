"""The ``Genotype`` of a DARTS-style cell: its text form, parsing and validation.

A genotype lists, for each intermediate node of the normal and of the reduction cell, its
incoming edges as ``(op_name, input_index)`` pairs, two per node in DARTS. Input 0 and 1 are
the outputs of the two previous cells, input ``i >= 2`` is intermediate node ``i - 2``. The
cell's output concatenates the states listed in ``*_concat``.

The text form is the one the DARTS code prints and researchers paste around::

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

:meth:`Genotype.parse` reads it back (also ``range(2, 6)`` as the DARTS code writes it)
without ``eval``, strictly: ASCII only; each field once (by keyword or position); edges a list
or tuple of ``(op, index)`` pairs (a set has no order and is refused); an index an int literal
in decimal digits (not ``1.5``, ``True``, ``'1'``, ``0x1``, ``01``); a concat a list or tuple of
such ints, or ``range(...)`` (not a string, a dict or a set). :meth:`Genotype.validate` then
rejects forward or out-of-range indices, unknown ops, odd edge counts and a concat that lists
a state twice. Constructing a ``Genotype`` in code is as strict about types: an index is a
Python or numpy integer, never a bool, a float or a str. :func:`load_genotype` also reads a
genotype from a file, which must be a regular UTF-8 text file of at most 1 MiB (a directory,
FIFO, device or binary file is refused before it is read). Each problem raises its own
:class:`MalformedGenotypeError` subclass, whose message echoes the input cut to 200 characters.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import re
import stat
from collections.abc import Sequence

import numpy as np

from jnas.ops.primitives import UnknownOpError, known_ops
from jnas.spaces.discrete import (
    ArchitectureError,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    NonAsciiTextError,
    UnknownChoiceError,
)
from jnas.spaces.text import ASCII_SPACE, MAX_TEXT_CHARS, TextErrors, check_text, echo, parse_int


class MalformedGenotypeError(ArchitectureError):
    """A genotype text or value that does not describe a valid cell pair."""


class GenotypeSyntaxError(MalformedGenotypeError, ArchitectureSyntaxError):
    """A genotype text that is not of the form ``Genotype(normal=[...], ...)``: bad syntax,
    a field given twice or missing, an unknown field, an empty or absurdly long text."""


class NonAsciiGenotypeError(GenotypeSyntaxError, NonAsciiTextError):
    """A genotype text with a non-ASCII character (e.g. a Unicode digit)."""


class GenotypeTypeError(MalformedGenotypeError, ArchitectureTypeError):
    """A genotype value of the wrong type: an index that is not an int, a concat that is not
    a list of ints, edges given as a set, a text that is not a ``str``."""


class GenotypeRangeError(MalformedGenotypeError, ArchitectureRangeError):
    """A well-typed genotype that is not a valid cell: an index out of range, an odd number
    of edges, a concat that lists a state out of range or twice."""


class UnknownGenotypeOpError(GenotypeRangeError, UnknownChoiceError, UnknownOpError):
    """A genotype edge whose op is not registered (also an ``UnknownOpError``)."""


class UnknownGenotypeError(MalformedGenotypeError):
    """A genotype spec that is neither a known name, a ``Genotype(...)`` text nor a file."""


class GenotypeFileError(MalformedGenotypeError):
    """A genotype path that cannot be read (permissions, a name too long, ...)."""


class NotARegularFileError(GenotypeFileError):
    """A genotype path that is a directory, FIFO, device or socket (checked before opening,
    so a FIFO never blocks)."""


class GenotypeFileTooLargeError(GenotypeFileError):
    """A genotype file larger than :data:`MAX_FILE_BYTES` (a genotype text is ~600 bytes)."""


class BinaryGenotypeFileError(GenotypeFileError):
    """A genotype file that is not text: it holds NUL bytes or is not UTF-8."""


_ERRORS = TextErrors(
    syntax=GenotypeSyntaxError,
    non_ascii=NonAsciiGenotypeError,
    type=GenotypeTypeError,
    range=GenotypeRangeError,
)
MAX_FILE_BYTES = MAX_TEXT_CHARS
# A range(...) concat longer than this lists more states than any cell has (checked before
# the range is expanded, so range(0, 999999999) costs nothing).
_MAX_CONCAT = 4096


Edge = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A pair of discrete cells (normal and reduction)."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        # Lists (from JSON or literals) become hashable tuples; nothing is coerced: an index
        # is an int (Python or numpy), an op a str, a concat a list, tuple or range of ints.
        for field in ("normal", "reduce"):
            object.__setattr__(self, field, _check_edges(getattr(self, field), field))
        for field in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, field, _check_concat(getattr(self, field), field))

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
        """Parse the DARTS text form (strictly, see the module docstring).

        Raises:
          GenotypeSyntaxError: not of the form ``Genotype(...)`` (``NonAsciiGenotypeError``
            for a non-ASCII character), a field twice, missing or unknown, an empty or too
            long text.
          GenotypeTypeError: a value of the wrong type (``text`` not a ``str`` included).
          GenotypeRangeError: an invalid cell (``UnknownGenotypeOpError`` for an unknown op).
        """
        text = check_text(text, "a genotype text", _ERRORS)
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError as e:
            where = f", line {e.lineno} column {e.offset}" if e.lineno else ""
            raise GenotypeSyntaxError(
                f"genotype text is not valid syntax ({e.msg}{where}): {echo(text)}"
            ) from None
        except (ValueError, MemoryError, RecursionError) as e:
            # CPython's parser gives up on very deep nesting (e.g. 100,000 unary minuses).
            raise GenotypeSyntaxError(
                f"genotype text cannot be parsed ({type(e).__name__}: nested too deeply?): "
                f"{echo(text)}"
            ) from None
        if not (
            isinstance(tree, ast.Call)
            and isinstance(tree.func, ast.Name)
            and tree.func.id == "Genotype"
        ):
            raise GenotypeSyntaxError(
                "genotype text must look like Genotype(normal=[...], normal_concat=[...], "
                f"reduce=[...], reduce_concat=[...]); got {echo(text)}"
            )
        fields = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for pos, arg in enumerate(tree.args):
            if isinstance(arg, ast.Starred):
                raise GenotypeSyntaxError(f"genotype text may not use *args: {echo(text)}")
            if pos >= len(fields):
                raise GenotypeSyntaxError(
                    f"genotype has {len(tree.args)} positional fields, at most {len(fields)} "
                    f"({', '.join(fields)}): {echo(text)}"
                )
            values[fields[pos]] = arg
        for kw in tree.keywords:
            if kw.arg is None:
                raise GenotypeSyntaxError(f"genotype text may not use **kwargs: {echo(text)}")
            if kw.arg not in fields:
                near = difflib.get_close_matches(kw.arg, fields, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise GenotypeSyntaxError(
                    f"unknown genotype field {echo(kw.arg)}{hint}; expected {', '.join(fields)}"
                )
            if kw.arg in values:
                raise GenotypeSyntaxError(
                    f"genotype field {kw.arg!r} is given twice (a later value would silently "
                    f"replace the first): {echo(text)}"
                )
            values[kw.arg] = kw.value
        missing = [f for f in fields if f not in values]
        if missing:
            raise GenotypeSyntaxError(
                f"genotype is missing field(s): {', '.join(missing)}: {echo(text)}"
            )
        reader = _Reader(text)
        parsed = {
            name: reader.concat(node, name)
            if name.endswith("_concat")
            else reader.edges(node, name)
            for name, node in values.items()
        }
        return cls(**parsed).validate()

    def validate(self, ops: Sequence[str] | None = None) -> Genotype:
        """Check ops and indices; return ``self``.

        Raises:
          GenotypeRangeError: an odd or zero number of edges, an index that is not an
            earlier state, a concat that is empty, lists a state out of range or twice.
          UnknownGenotypeOpError: an op not in ``ops`` (default: every registered op).
        """
        ops = tuple(known_ops() if ops is None else ops)
        for cell in ("normal", "reduce"):
            edges = getattr(self, cell)
            concat = getattr(self, f"{cell}_concat")
            if not edges or len(edges) % 2:
                raise GenotypeRangeError(
                    f"{cell} cell needs two edges per node, got {len(edges)} edges"
                )
            n_nodes = len(edges) // 2
            for k, (op, idx) in enumerate(edges):
                node = k // 2
                if op not in ops:
                    raise UnknownGenotypeOpError(
                        f"{cell} cell, node {node}: unknown op {echo(op)}; known ops: "
                        f"{', '.join(sorted(ops))}"
                    )
                if not 0 <= idx < node + 2:
                    raise GenotypeRangeError(
                        f"{cell} cell, node {node} (state {node + 2}): input index {idx} must "
                        f"be in [0, {node + 1}] (inputs may only come from earlier states)"
                    )
            if not concat or any(not 0 <= i < n_nodes + 2 for i in concat):
                raise GenotypeRangeError(
                    f"{cell}_concat {echo(list(concat))} must list states in [0, {n_nodes + 1}]"
                )
            if len(set(concat)) != len(concat):
                twice = sorted({i for i in concat if concat.count(i) > 1})
                raise GenotypeRangeError(
                    f"{cell}_concat {echo(list(concat))} lists state(s) {twice} more than once"
                )
        return self


def _is_int(x) -> bool:
    """A Python or numpy int (never a bool, a float or a str)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _kind(value) -> str:
    return f"{type(value).__name__} {echo(value)}"


def _check_edges(edges, field: str) -> tuple[Edge, ...]:
    if isinstance(edges, set | frozenset):
        raise GenotypeTypeError(
            f"{field} is a set of edges; a set has no order (the cell would depend on Python's "
            f"hash order): give a list of (op, index) pairs, got {echo(edges)}"
        )
    if not isinstance(edges, list | tuple):
        raise GenotypeTypeError(f"{field} must be a list of (op, index) pairs, got {_kind(edges)}")
    out = []
    for k, edge in enumerate(edges):
        if not (isinstance(edge, list | tuple) and len(edge) == 2):
            raise GenotypeTypeError(f"{field}[{k}] must be an (op, index) pair, got {_kind(edge)}")
        op, idx = edge
        if not isinstance(op, str):
            raise GenotypeTypeError(f"{field}[{k}]: the op must be a str, got {_kind(op)}")
        if not _is_int(idx):
            raise GenotypeTypeError(
                f"{field}[{k}]: the input index must be an int, got {_kind(idx)}"
            )
        out.append((op, int(idx)))
    return tuple(out)


def _check_concat(concat, field: str) -> tuple[int, ...]:
    if isinstance(concat, str | bytes):
        raise GenotypeTypeError(
            f"{field} is a string, {echo(concat)}; give a list of ints such as [2, 3, 4, 5]"
        )
    if not isinstance(concat, list | tuple | range):
        raise GenotypeTypeError(
            f"{field} must be a list of ints (or a range), got {_kind(concat)}"
            + ("; a set has no order" if isinstance(concat, set | frozenset) else "")
        )
    if len(concat) > _MAX_CONCAT:
        raise GenotypeRangeError(f"{field} lists {len(concat)} states, more than any cell has")
    bad = [i for i in concat if not _is_int(i)]
    if bad:
        raise GenotypeTypeError(f"{field} must list ints, got {_kind(bad[0])} in {echo(concat)}")
    return tuple(int(i) for i in concat)


# An op as the text form writes it: one plain single- or double-quoted string, so that
# 'sep\x5fconv_3x3', u'...' or 'sep_' 'conv_3x3' do not silently become another spelling.
_QUOTED = re.compile(r"'[^'\\\r\n]*'|\"[^\"\\\r\n]*\"")


class _Reader:
    """Reads a field of a parsed genotype text; only the shapes the text form has."""

    def __init__(self, text: str):
        self.text = text
        # Where each line starts, once: ast.get_source_segment splits the whole text again
        # for every node (quadratic in a long text). Python's parser ends a line at \r\n, \r
        # or \n; the text is ASCII, so the nodes' byte offsets are character offsets.
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def source(self, node: ast.AST) -> str:
        """The text of ``node``."""
        start = self.starts[node.lineno - 1] + node.col_offset
        return self.text[start : self.starts[node.end_lineno - 1] + node.end_col_offset]

    def int(self, node: ast.AST, what: str) -> int:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            # -1 reads as a number, then fails validation as out of range.
            if isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
                return -self.int(node.operand, what)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return parse_int(self.source(node), what, _ERRORS)
        if isinstance(node, ast.Constant):
            value = node.value
            kind = {bool: "a bool", float: "a float", str: "a str"}.get(type(value), "not an int")
            raise GenotypeTypeError(
                f"{what} must be an int, got {echo(self.source(node))} ({kind})"
            )
        raise GenotypeTypeError(f"{what} must be an int literal, got {echo(self.source(node))}")

    def edges(self, node: ast.AST, field: str) -> list[Edge]:
        if isinstance(node, ast.Set):
            raise GenotypeTypeError(
                f"{field} is a set of edges; a set has no order (the cell would depend on "
                f"Python's hash order): write a list [...], got {echo(self.source(node))}"
            )
        if not isinstance(node, ast.List | ast.Tuple):
            raise GenotypeTypeError(
                f"{field} must be a literal list of (op, index) pairs, got "
                f"{echo(self.source(node))}"
            )
        out = []
        for k, elt in enumerate(node.elts):
            if not (isinstance(elt, ast.Tuple | ast.List) and len(elt.elts) == 2):
                raise GenotypeTypeError(
                    f"{field}[{k}] must be an (op, index) pair, got {echo(self.source(elt))}"
                )
            op, idx = elt.elts
            if not (isinstance(op, ast.Constant) and type(op.value) is str):
                raise GenotypeTypeError(
                    f"{field}[{k}]: the op must be a quoted name, got {echo(self.source(op))}"
                )
            if not _QUOTED.fullmatch(self.source(op)):
                raise GenotypeSyntaxError(
                    f"{field}[{k}]: the op must be written as one plain quoted name (no "
                    f"escapes, prefixes or joined strings), got {echo(self.source(op))}"
                )
            out.append((op.value, self.int(idx, f"{field}[{k}]: the input index")))
        return out

    def concat(self, node: ast.AST, field: str) -> list[int] | range:
        # range(a, b) as written by the DARTS code's genotypes.py.
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
        ):
            if node.keywords or not 1 <= len(node.args) <= 3:
                raise GenotypeTypeError(
                    f"{field}: range(...) takes 1 to 3 int arguments, got {echo(self.source(node))}"
                )
            args = [self.int(a, f"{field}: an argument of range(...)") for a in node.args]
            if len(args) == 3 and args[2] == 0:
                raise GenotypeRangeError(f"{field}: range(...) with step 0")
            return range(*args)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            raise GenotypeTypeError(
                f"{field} is a string, {echo(self.source(node))}; write a list of ints such as "
                "[2, 3, 4, 5]"
            )
        if not isinstance(node, ast.List | ast.Tuple):
            kind = " (a set has no order)" if isinstance(node, ast.Set) else ""
            raise GenotypeTypeError(
                f"{field} must be a list of ints{kind}, got {echo(self.source(node))}"
            )
        return [self.int(elt, f"{field}[{k}]") for k, elt in enumerate(node.elts)]


def load_genotype(spec: str, named: dict[str, Genotype] | None = None) -> Genotype:
    """Resolve a genotype given by name, by text, or by a path to a file holding its text.

    Args:
      spec: a name from ``named`` (e.g. ``"DARTS_V2"``), a ``Genotype(...)`` text, or the path
        of a file written by a search (``genotype.txt``; a ``str`` or ``os.PathLike``).
      named: the known named genotypes.

    Returns:
      The validated genotype.

    Raises:
      UnknownGenotypeError: ``spec`` is none of the three (the message lists the names and
        the nearest one).
      GenotypeFileError: the path cannot be read as a genotype text file
        (``NotARegularFileError``, ``GenotypeFileTooLargeError``, ``BinaryGenotypeFileError``).
      MalformedGenotypeError: the text (given or read) does not parse, see
        :meth:`Genotype.parse`.
    """
    named = named or {}
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise GenotypeTypeError(
            f"expected a genotype name, text or path, got {type(spec).__name__} {echo(spec)}"
        )
    if len(spec) > MAX_TEXT_CHARS:
        raise GenotypeSyntaxError(
            f"genotype spec of {len(spec)} characters is longer than any genotype name, text "
            f"or path (at most {MAX_TEXT_CHARS}): {echo(spec)}"
        )
    spec = spec.strip(ASCII_SPACE)
    if not spec:
        raise GenotypeSyntaxError(
            "empty genotype spec: give a name, a Genotype(...) text or a path"
        )
    if spec in named:
        return named[spec]
    if spec.startswith("Genotype("):
        return Genotype.parse(spec)
    if "\x00" in spec:
        raise GenotypeSyntaxError(f"genotype spec {echo(spec)} holds a NUL character")
    try:
        st = os.stat(spec)
    except (FileNotFoundError, NotADirectoryError):
        near = difflib.get_close_matches(spec, list(named), n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UnknownGenotypeError(
            f"{echo(spec)} is neither a known genotype name ({', '.join(sorted(named))}), a "
            f"Genotype(...) text, nor an existing file{hint}"
        ) from None
    except OSError as e:
        raise GenotypeFileError(f"cannot read genotype file {echo(spec)}: {e.strerror}") from None
    return _read_genotype_file(spec, st)


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISREG, "regular file"),
    ):
        if test(mode):
            return kind
    return "special file"


def _read_genotype_file(path: str, st: os.stat_result) -> Genotype:
    """The genotype in the regular text file ``path`` (``st``: its ``os.stat``)."""

    def check(st):
        kind = _file_kind(st.st_mode)
        if kind != "regular file":
            raise NotARegularFileError(
                f"genotype path {echo(path)} is a {kind}, not a regular file holding a "
                "Genotype(...) text"
            )
        if st.st_size > MAX_FILE_BYTES:
            raise GenotypeFileTooLargeError(
                f"genotype file {echo(path)} has {st.st_size} bytes; a genotype text has a "
                f"few hundred (at most {MAX_FILE_BYTES} are read)"
            )

    check(st)
    try:
        # O_NONBLOCK: should a FIFO replace the file after the stat, opening it cannot block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise GenotypeFileError(f"cannot open genotype file {echo(path)}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        check(os.fstat(f.fileno()))
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise GenotypeFileTooLargeError(
            f"genotype file {echo(path)} has more than {MAX_FILE_BYTES} bytes"
        )
    if b"\x00" in data:
        raise BinaryGenotypeFileError(
            f"genotype file {echo(path)} holds NUL bytes (byte {data.index(0)}): a binary file, "
            "not a Genotype(...) text"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BinaryGenotypeFileError(
            f"genotype file {echo(path)} is not UTF-8 text (byte {e.start}: "
            f"{data[e.start : e.start + 1]!r})"
        ) from None
    try:
        return Genotype.parse(text)
    except MalformedGenotypeError as e:
        raise type(e)(f"genotype file {echo(path)}: {e}") from None
