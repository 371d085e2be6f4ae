"""Search strategies, each one module ``jnas.strategies.<name>`` loaded by name.

A gradient-based strategy module exposes ``build(config, *, num_classes, steps_per_epoch,
axis_name) -> OneShotSearch``; the runner finds it from ``config.strategy``. A new method is
a new module here and a config: add its name to ``GRADIENT_STRATEGIES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

GRADIENT_STRATEGIES = ("darts", "gdas", "pcdarts", "pdarts")


def get_gradient_strategy(name: str) -> ModuleType:
    """The strategy module for ``config.strategy``; a clear error for unknown names."""
    if name not in GRADIENT_STRATEGIES:
        raise ValueError(
            f"unknown strategy {name!r}; gradient-based strategies: "
            f"{', '.join(GRADIENT_STRATEGIES)}"
        )
    return importlib.import_module(f"jnas.strategies.{name}")
