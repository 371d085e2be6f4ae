"""The entry points' error boundary: a known error is a few lines and an exit status, a bug a
traceback.

Every ``experiments/*.py`` main runs as ``jnas.cli.run(main)`` instead of ``app.run(main)``.
The boundary covers flag parsing too (absl parses the flags, and ml_collections loads the
config file and applies ``--config.<key>=`` overrides, inside ``app.run`` before ``main``):

* a known error (any :class:`jnas.errors.JnasError`; a bad flag, an unknown or wrongly typed
  ``--config.<key>``, a config file that is missing or fails to load) prints
  ``<command>: <ErrorName>: <message>`` on stderr, the message naming the problem and what to
  do, echoed input cut to a readable length, and exits with the error's status
  (:mod:`jnas.errors`: 2 bad input or config, 3 a non-finite loss or weights, 4 a workdir
  that belongs to another config or holds an incompatible checkpoint, 5 a missing or
  malformed data set);
* anything else is a bug: Python's traceback and status 1, as without the boundary;
* ``JNAS_TRACEBACK=1`` also prints the traceback of a known error (same exit status).

An unknown config key names the nearest known key (ml_collections' suggestion, else the
keys of that section).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable

from jnas.errors import EXIT_BAD_INPUT, ConfigError, JnasError, clip

__all__ = ["FlagError", "describe", "parse_flags", "run"]

TRACEBACK_ENV = "JNAS_TRACEBACK"
_LINE = 300  # characters of one echoed line
_FLAGS_HINT = "(--helpfull lists the flags; --config.<key>=<value> overrides a config key)"


class FlagError(ConfigError):
    """A command-line flag, ``--config.<key>`` override or config file that cannot be used."""


def _prog(argv=None) -> str:
    argv = sys.argv if argv is None else argv
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return spec.name
    return os.path.basename(argv[0]) if argv else "jnas"


def _clip_lines(text: str, limit: int = _LINE, max_lines: int = 30) -> str:
    lines = [clip(ln, limit) for ln in str(text).splitlines()]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def describe(exc: BaseException) -> tuple[int, str] | None:
    """``(exit status, message)`` for a known error, None for a bug (or a SystemExit)."""
    if isinstance(exc, JnasError):
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return int(getattr(exc, "exit_status", EXIT_BAD_INPUT)), (
            f"{type(exc).__name__}: {_clip_lines(text)}"
        )
    return None


def run(main: Callable, *, argv: list[str] | None = None) -> None:
    """``absl.app.run(main)`` inside the error boundary (see the module docstring); exits.
    Run from the command line (``argv`` None), it first relaunches the process with jnas's
    malloc settings (:func:`jnas.runtime.relaunch`)."""
    from absl import app

    from jnas import runtime

    if argv is None:
        runtime.relaunch()

    try:
        app.run(main, argv=argv, flags_parser=parse_flags)
    except KeyboardInterrupt:
        print(f"{_prog(argv)}: interrupted; rerun the command to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # SystemExit (exit statuses, --help) passes through
        known = describe(e)
        if known is None:
            raise
        status, message = known
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"{_prog(argv)}: {message}", file=sys.stderr, flush=True)
        sys.exit(status)


# --- flag parsing -------------------------------------------------------------------------


def parse_flags(argv: list[str]) -> list[str]:
    """``FLAGS(argv)`` with every parsing failure (absl's flag errors, ml_collections' config
    file and override errors) raised as :class:`FlagError`; the ``flags_parser`` of
    :func:`run`. Returns the arguments left after the flags."""
    from absl import flags

    try:
        args = flags.FLAGS(argv)
    except flags.Error as e:
        raise FlagError(_flags_error_message(str(e))) from None
    except (AttributeError, KeyError) as e:  # ml_collections: an unknown --config.<key>
        raise FlagError(_unknown_key_message(e, argv)) from None
    except Exception as e:  # the config file itself failed (syntax, import, get_config)
        raise FlagError(_config_file_message(e, argv)) from None
    _check_config_values(argv)
    return args


def _flags_error_message(text: str) -> str:
    marker = "Error whilst parsing config file:"
    if marker in text:  # ml_collections wraps a TypeError/ValueError of get_config()
        head = text.split(marker, 1)[0].rstrip(": ")
        tail = [ln for ln in text.split(marker, 1)[1].splitlines() if ln.strip()]
        return f"{clip(head, _LINE)}: the config file's get_config() failed: " + clip(
            tail[-1].strip() if tail else "?", _LINE
        )
    return f"{_clip_lines(text)}\n{_FLAGS_HINT}"


def _config_flags(argv) -> dict[str, str]:
    """The config-file flags of the command line: name -> the value given (file path)."""
    from absl import flags
    from ml_collections.config_flags import config_flags

    out = {}
    for name in list(flags.FLAGS):
        try:
            flag = flags.FLAGS[name]
        except KeyError:
            continue
        if config_flags.is_config_flag(flag):
            for i, arg in enumerate(argv):
                if arg.startswith(f"--{name}="):
                    out[name] = arg.split("=", 1)[1]
                elif arg == f"--{name}" and i + 1 < len(argv):
                    out[name] = argv[i + 1]
    return out


def _overrides(argv, name: str) -> list[tuple[str, str]]:
    """``[(dotted key, the argument)]`` of the ``--<name>.<key>[=value]`` arguments."""
    out = []
    for arg in argv:
        m = re.match(rf"--(?:no)?{re.escape(name)}\.([^=]+)", arg)
        if m:
            out.append((m.group(1), arg))
    return out


def _unknown_key_message(e: BaseException, argv) -> str:
    text = str(e.args[0]) if e.args else str(e)
    text = text.strip("'\"").replace("\\n", "\n").replace("\\'", "'")
    bad = text.split("\n")[0].strip("'\" ")
    m = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    for name in _config_flags(argv) or {"config": ""}:
        for key, arg in _overrides(argv, name):
            parts = key.split(".")
            if bad not in parts:
                continue
            i = parts.index(bad)
            where = ".".join(parts[: i + 1])
            msg = f"unknown config key {where!r} (in {clip(arg, 200)})"
            if m:
                near = ".".join(parts[:i] + [m.group(1)])
                return f"{msg}; did you mean {near!r}?"
            known = _section_keys(argv, name, parts[:i])
            if known:
                near = difflib.get_close_matches(bad, known, n=1, cutoff=0.5)
                hint = f"did you mean {'.'.join(parts[:i] + near)!r}? " if near else ""
                shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
                return f"{msg}; {hint}the keys there: {shown}"
            return msg
    return f"unknown config key {clip(bad, 200)!r} {_FLAGS_HINT}"


def _section_keys(argv, name: str, path: list[str]) -> list[str]:
    """The keys of ``path`` in the config file given to ``--<name>`` ([] if unknown)."""
    from ml_collections.config_flags import config_flags

    value = _config_flags(argv).get(name)
    if not value:
        return []
    try:
        node = config_flags.ConfigFileFlagParser(name).parse(value)
        for part in path:
            node = node[part]
        return sorted(node.keys())
    except Exception:  # the listing is a courtesy: the error is reported either way
        return []


def _config_file_message(e: BaseException, argv) -> str:
    files = _config_flags(argv)
    where = ", ".join(f"--{k}={clip(v, 200)}" for k, v in files.items()) or "the config file"
    frames = traceback.extract_tb(e.__traceback__)
    at = ""
    if isinstance(e, SyntaxError) and e.filename:
        at = f" (at {e.filename}, line {e.lineno})"
    elif frames:
        at = f" (at {frames[-1].filename}, line {frames[-1].lineno})"
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    return f"{where}: the config file cannot be loaded: {clip(last, _LINE)}{at}"


def _check_config_values(argv) -> None:
    """A config file that was not found is reported by ml_collections only when the config
    is first used (inside main): report it here, before main runs."""
    from absl import flags
    from ml_collections import ConfigDict

    for name, given in _config_flags(argv).items():
        value = flags.FLAGS[name].value
        if isinstance(value, ConfigDict):
            continue
        error = None
        try:
            error = object.__getattribute__(value, "_error")
        except AttributeError:
            pass
        if error is not None:
            lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
            raise FlagError(
                f"--{name}={clip(given, 200)}: the config file cannot be loaded: "
                f"{clip(lines[-1] if lines else error, _LINE)}"
            )
        raise FlagError(
            f"--{name}={clip(given, 200)}: get_config() returned a {type(value).__name__}, "
            "not an ml_collections.ConfigDict"
        )


def unexpected_arguments(argv: list[str]) -> str:
    """The message for positional arguments a command does not take (``argv[1:]``)."""
    shown = ", ".join(repr(clip(a, 100)) for a in argv[1:6])
    more = f" and {len(argv) - 6} more" if len(argv) > 6 else ""
    return (
        f"unexpected argument(s) {shown}{more}: this command takes only flags "
        "(--name=value; a config key: --config.<key>=<value>)"
    )
