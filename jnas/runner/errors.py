"""The errors every host loop raises the same way, and the finite-value guard they share.

The guard has two halves, one promise: nothing non-finite is ever checkpointed.

* After every step (round), each host loop checks scalars the compiled step already returns
  (the losses, the global norms of the weights and alpha after the update; the rewards),
  with :func:`check_finite`, so a run stops at the step that went wrong;
* :class:`jnas.runner.checkpoint.Checkpointer` checks every floating leaf of the state (and
  meta) it is about to save, with the same function, so no state with a NaN or an infinity
  (in an optimizer moment, a batch-norm statistic, a strategy's parameters) reaches disk,
  whatever the runner checked before.

Either raises :class:`NonFiniteLossError` naming the value, the step and the last good
checkpoint, which is left as it was; a rerun with saner settings resumes from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnas.errors import EXIT_NON_FINITE, JnasError


class NonFiniteLossError(FloatingPointError, JnasError):
    """A loss, reward or updated weight became NaN or infinite; the last checkpoint is kept."""

    exit_status = EXIT_NON_FINITE


def _first_non_finite(tree) -> tuple[str, float] | None:
    """``(path, first non-finite value)`` of the first floating leaf of ``tree`` holding a
    NaN or an infinity, or None. Leaves that are not floating (ints, PRNG keys, text) are
    skipped."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            if not isinstance(leaf, (float, complex)):
                continue
            dtype = np.dtype(type(leaf))
        if not jnp.issubdtype(dtype, jnp.inexact):
            continue
        a = np.asarray(jax.device_get(leaf))
        bad = ~np.isfinite(a)
        if bad.any():
            return jax.tree_util.keystr(path), a[bad].flat[0]
    return None


def first_non_finite(tree) -> str | None:
    """The path of the first floating leaf of ``tree`` with a NaN or inf, or None (``""`` for
    a tree that is one leaf)."""
    found = _first_non_finite(tree)
    return None if found is None else found[0]


def check_finite(
    values: dict, *, step: int, workdir: str, last_checkpoint, hint: str, unit: str = "step"
) -> None:
    """Raises :class:`NonFiniteLossError` if any of ``values`` holds a NaN or an infinity.

    Args:
      values: name -> a host scalar (a loss, a parameter norm, ...) or a pytree (a state to
        be saved: every floating leaf is checked and the message names the first bad one).
      step: the step (or round) that produced them.
      workdir: the run's workdir (named in the message).
      last_checkpoint: the step of the last good checkpoint, or None.
      hint: what the user may change ("lower the learning rate", ...).
      unit: what ``step`` counts ("step", "round", "checkpoint").
    """
    for name, value in values.items():
        found = _first_non_finite(value)
        if found is None:
            continue
        path, v = found
        where = (
            f"the last good checkpoint (step {last_checkpoint}) in {workdir}/checkpoints is "
            "untouched"
            if last_checkpoint
            else f"no checkpoint was written in {workdir}"
        )
        raise NonFiniteLossError(
            f"{name}{path} is {float(np.real(v)) if np.isreal(v) else v} at {unit} {step}; the "
            f"run stopped without saving: {where}. {hint}, then rerun to resume."
        )
