"""The base of every error jnas raises on purpose, and the exit statuses of the entry points.

Every named error of the package (a config value, an architecture text, an unknown name, a
data set that is not there, a non-finite loss, a workdir that belongs to another config)
derives from :class:`JnasError`, besides the built-in class it always had (``ValueError``,
``KeyError``, ``FileNotFoundError``, ...), so ``except ValueError`` callers keep working and
the entry points' error boundary (:mod:`jnas.cli`) can tell a known error from a bug with one
``except JnasError``.

Each class says which exit status the command line gives it (``exit_status``); a bug (any
other exception) keeps Python's traceback and status 1. This module imports nothing from
jnas, so any module may import it.
"""

from __future__ import annotations

# The entry points' exit statuses (BUILD.md, "What the error boundary promises").
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected exception: Python's traceback and status
EXIT_BAD_INPUT = 2  # a config, flag, genotype/architecture text or name that is not valid
EXIT_NON_FINITE = 3  # a loss, reward or updated weight became NaN or infinite
EXIT_WORKDIR = 4  # the workdir belongs to another config or holds an incompatible checkpoint
EXIT_DATA = 5  # a data set or table that is missing, unreadable or malformed


class JnasError(Exception):
    """A known error: bad input or a state the user can fix, named in the message.

    ``exit_status`` is the status the entry points exit with (:data:`EXIT_BAD_INPUT` unless a
    subclass says otherwise).
    """

    exit_status: int = EXIT_BAD_INPUT


class ConfigError(JnasError, ValueError):
    """A config value (or flag) that has the wrong type, is out of range or is not allowed
    with the command or the strategy."""


class WorkdirConfigError(JnasError, ValueError):
    """The workdir was made by a config that differs from this one in keys that change the
    results; nothing in the workdir was touched."""

    exit_status = EXIT_WORKDIR


def clip(text, limit: int = 200) -> str:
    """``text`` (any value, as ``str``) cut to ``limit`` characters for an error message."""
    s = text if isinstance(text, str) else repr(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit]}... ({len(s)} characters)"
