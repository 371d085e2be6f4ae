"""Registries by name: search spaces, strategies and whatever else a config names.

A :class:`Registry` maps names to entries (a class, a factory, a module). Entries register
themselves with a decorator in the module that defines them::

    SPACES = Registry("search space", package="jnas.spaces")

    @SPACES.register("nb201")
    class NB201Space: ...

so that a new space or strategy is one new module and one config: no list elsewhere names
it. A lookup that misses imports every module of the registry's ``package`` once (so that a
module nobody imported yet still registers), and a name of the form ``"pkg.module:attr"``
loads ``attr`` from an importable module outside jnas. An unknown name raises a ``KeyError``
subclass, :class:`UnknownNameError`, that lists the known names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from jnas.errors import JnasError


class UnknownNameError(KeyError, ValueError, JnasError):
    """A config names a space, strategy, ... that no registry entry has."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


class Registry:
    """Names to entries, filled by :meth:`register` and found by :meth:`get`.

    Args:
      kind: what the entries are, for error messages ("search space", "strategy").
      package: the package whose modules are imported on a miss (None: none).
    """

    def __init__(self, kind: str, package: str | None = None):
        self.kind, self.package = kind, package
        self._entries: dict[str, Any] = {}
        self._info: dict[str, dict] = {}
        self._scanned = False

    def register(self, name: str, **info) -> Callable[[Any], Any]:
        """Decorator: register the decorated object under ``name`` (with optional ``info``).

        Registering the same object twice (a module imported again) is a no-op; another
        object under a taken name raises ``ValueError``.
        """

        def deco(obj):
            old = self._entries.get(name)
            if old is not None and old is not obj and _qualname(old) != _qualname(obj):
                raise ValueError(f"{self.kind} {name!r} is already registered ({old!r})")
            self._entries[name] = obj
            self._info[name] = dict(info)
            return obj

        return deco

    def _scan(self) -> None:
        if self._scanned or self.package is None:
            return
        self._scanned = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__, prefix=f"{self.package}."):
            importlib.import_module(mod.name)

    def get(self, name: str) -> Any:
        """The entry registered as ``name``, or ``"pkg.module:attr"`` loaded by path."""
        if not isinstance(name, str):
            raise UnknownNameError(f"a {self.kind} name must be a string, got {name!r}")
        if name not in self._entries and ":" in name:
            module, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise UnknownNameError(f"cannot load {self.kind} {name!r}: {e}") from None
        if name not in self._entries:
            self._scan()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
                "(or 'package.module:attribute')"
            )
        return self._entries[name]

    def info(self, name: str) -> dict:
        """The keyword arguments given to :meth:`register` for ``name``."""
        self.get(name)
        return dict(self._info.get(name, {}))

    def names(self, **where) -> tuple[str, ...]:
        """All registered names (sorted), optionally those whose info matches ``where``."""
        self._scan()
        return tuple(
            sorted(
                n
                for n in self._entries
                if all(self._info.get(n, {}).get(k) == v for k, v in where.items())
            )
        )

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
