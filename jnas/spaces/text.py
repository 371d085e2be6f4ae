"""The checks every parser of a user-given architecture text shares.

An architecture text (a ``Genotype(...)``, a NAS-Bench-201 or a NAS-RL string) is read
strictly: it is a ``str`` of at most :data:`MAX_TEXT_CHARS` characters, not empty, and ASCII
only (Unicode digits such as ``'٣'`` or ``'０'`` are rejected, never read as numbers); a
number is written in ASCII decimal digits without sign, underscores or leading zeros. Each
violation raises a named :class:`~jnas.spaces.discrete.ArchitectureError` subclass (the
parser passes the classes of its own space), and a message echoes the input through
:func:`echo`, cut to a readable length.
"""

from __future__ import annotations

import dataclasses
import re

from jnas.errors import clip
from jnas.spaces.discrete import (
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    NonAsciiTextError,
)

# The longest architecture text (or genotype file) read at all: the texts of the spaces are
# a few hundred characters (a 100-layer NAS-RL chain with every skip connection: ~16,000).
MAX_TEXT_CHARS = 1 << 20
# A number of at most this many digits; larger ones are out of every space's range (and
# Python refuses int() of over 4,300 digits with a bare ValueError).
MAX_DIGITS = 9
ECHO_CHARS = 200

NUMBER = r"(?:0|[1-9][0-9]*)"  # ASCII decimal, no sign, no leading zero
_NUMBER_RE = re.compile(NUMBER)
# The white space a parser ignores around a text (a line read from a file).
ASCII_SPACE = " \t\r\n"


def echo(value, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters (never the
    megabytes a user may have passed); the cut says how long the whole was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return clip(value, limit)


@dataclasses.dataclass(frozen=True)
class TextErrors:
    """The error classes a parser raises for each kind of malformed text."""

    syntax: type[ArchitectureSyntaxError] = ArchitectureSyntaxError
    non_ascii: type[NonAsciiTextError] = NonAsciiTextError
    type: type[ArchitectureTypeError] = ArchitectureTypeError
    range: type[ArchitectureRangeError] = ArchitectureRangeError


DEFAULT_ERRORS = TextErrors()


def check_text(text, what: str, errors: TextErrors = DEFAULT_ERRORS) -> str:
    """``text`` without surrounding ASCII white space, if it may be parsed at all.

    Args:
      text: the user's input.
      what: what it should be, for the messages (e.g. ``"a NAS-Bench-201 architecture
        string"``).
      errors: the classes to raise.

    Raises:
      errors.type: ``text`` is not a ``str``.
      errors.syntax: it is empty (or white space) or longer than :data:`MAX_TEXT_CHARS`.
      errors.non_ascii: it holds a character outside ASCII (named with its position).
    """
    if not isinstance(text, str):
        raise errors.type(f"expected {what}, got {type(text).__name__} {echo(text)}")
    if len(text) > MAX_TEXT_CHARS:
        raise errors.syntax(
            f"{what} of {len(text)} characters is longer than any valid one (at most "
            f"{MAX_TEXT_CHARS}): {echo(text)}"
        )
    if not text.isascii():
        pos = next(k for k, ch in enumerate(text) if not ch.isascii())
        ch = text[pos]
        kind = "a Unicode digit" if ch.isdigit() else "a non-ASCII character"
        raise errors.non_ascii(
            f"{what} may only hold ASCII characters; character {pos} is {kind}, {ch!r} "
            f"(U+{ord(ch):04X}): {echo(text)}"
        )
    stripped = text.strip(ASCII_SPACE)
    if not stripped:
        raise errors.syntax(f"expected {what}, got an empty text: {echo(text)}")
    return stripped


def parse_int(token: str, what: str, errors: TextErrors = DEFAULT_ERRORS) -> int:
    """The value of ``token``, which must be an ASCII decimal number (:data:`NUMBER`) of at
    most :data:`MAX_DIGITS` digits: ``'3'``, never ``'٣'``, ``'03'``, ``'+3'``, ``'3_0'``."""
    if not (isinstance(token, str) and token.isascii() and _NUMBER_RE.fullmatch(token)):
        raise errors.syntax(
            f"{what} must be written in ASCII decimal digits without sign or leading zeros, "
            f"got {echo(token)}"
        )
    if len(token) > MAX_DIGITS:
        raise errors.range(f"{what} {echo(token)} has more than {MAX_DIGITS} digits")
    return int(token)
