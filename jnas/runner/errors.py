"""The errors every host loop raises the same way, and the finite-value guard they share."""

from __future__ import annotations

import math

import jax
import numpy as np

from jnas.errors import EXIT_NON_FINITE, JnasError


class NonFiniteLossError(FloatingPointError, JnasError):
    """A loss, reward or updated weight became NaN or infinite; the last checkpoint is kept."""

    exit_status = EXIT_NON_FINITE


def first_non_finite(tree) -> str | None:
    """The path of the first leaf of ``tree`` (host values) with a NaN or inf, or None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            return jax.tree_util.keystr(path) or "value"
    return None


def check_finite(values: dict, *, step: int, workdir: str, last_checkpoint, hint: str) -> None:
    """Raises :class:`NonFiniteLossError` if any of the scalar ``values`` is not finite.

    Args:
      values: name -> host scalar (losses, a parameter norm, ...).
      step: the step (or round) that produced them.
      workdir: the run's workdir (named in the message).
      last_checkpoint: the step of the last good checkpoint, or None.
      hint: what the user may change ("lower the learning rate", ...).
    """
    for name, value in values.items():
        v = float(value)
        if not math.isfinite(v):
            where = (
                f"the last good checkpoint (step {last_checkpoint}) in {workdir}/checkpoints is "
                "untouched"
                if last_checkpoint
                else f"no checkpoint was written in {workdir}"
            )
            raise NonFiniteLossError(
                f"{name} is {v} at step {step}; the run stopped without saving: {where}. "
                f"{hint}, then rerun to resume."
            )
