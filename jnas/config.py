"""Config helpers shared by the entry points, the experiments, the benchmarks and the tests."""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections


def with_overrides(config: ml_collections.ConfigDict, overrides: Mapping | None = None, **kw):
    """A copy of ``config`` with dotted-key overrides applied (``{"search.epochs": 2}``).

    Keyword arguments use ``__`` for the dots (``search__epochs=2``). Values are type-checked
    as ``--config.<key>=`` flags are (ml_collections); a key the config does not have raises
    ``KeyError`` naming it.
    """
    flat = dict(overrides or {})
    flat.update({k.replace("__", "."): v for k, v in kw.items()})
    out = config.copy_and_resolve_references()
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for i, part in enumerate(path):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise KeyError(f"config has no key {'.'.join(path[: i + 1])!r} (in {key!r})")
            node = node[part]
        if not isinstance(node, ml_collections.ConfigDict) or last not in node:
            raise KeyError(f"config has no key {key!r}")
        node[last] = value
    return out
