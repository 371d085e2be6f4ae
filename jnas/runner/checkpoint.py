"""Checkpoints in the workdir with orbax: save a state pytree plus JSON metadata, resume.

Saves are synchronous and atomic (orbax writes a temporary directory and renames it), so a
run killed at any moment, SIGKILL included, leaves the last complete checkpoint intact and
resumes from it. A checkpoint that does not fit the current run (another network, another
strategy) raises :class:`IncompatibleCheckpointError` naming the workdir; nothing in it is
overwritten. A state with a NaN or an infinity in any floating leaf is never saved
(:class:`jnas.runner.errors.NonFiniteLossError`, see :mod:`jnas.runner.errors`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jnas.errors import EXIT_WORKDIR, JnasError
from jnas.runner.errors import check_finite
from jnas.runner.writers import write_text


class IncompatibleCheckpointError(RuntimeError, JnasError):
    """The workdir holds a checkpoint that cannot be restored into the current run."""

    exit_status = EXIT_WORKDIR


def _shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): tuple(getattr(x, "shape", np.shape(x))) for p, x in flat}


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints under ``<workdir>/checkpoints``.

    ``hint`` ends the message of the :class:`~jnas.runner.errors.NonFiniteLossError` that
    :meth:`save` raises for a state with a NaN or an infinity: what the user may change.
    """

    def __init__(
        self,
        workdir: str,
        max_to_keep: int = 2,
        *,
        hint: str = "Lower the learning rate(s) or check the data",
    ):
        self.workdir, self.hint = workdir, hint
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Save ``state`` (a pytree of arrays) and JSON-able ``meta`` at ``step``.

        Raises:
          NonFiniteLossError: a floating leaf of ``state`` holds a NaN or an infinity;
            nothing was written.
        """
        state = jax.device_get(state)
        check_finite(
            {"the state to checkpoint": state},
            step=int(step),
            workdir=self.workdir,
            last_checkpoint=self.latest_step(),
            hint=self.hint,
            unit="checkpoint",
        )
        meta = dict(meta or {})
        meta["shapes"] = {k: list(v) for k, v in _shapes(state).items()}
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore into the structure, shapes and dtypes of ``target``.

        Args:
          target: a state of the current run, or its abstract shapes (``jax.eval_shape``).
          step: the step to restore, by default the latest.

        Returns:
          ``(state, meta)``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        saved = {k: tuple(v) for k, v in (meta or {}).get("shapes", {}).items()}
        wanted = _shapes(target)
        if saved and saved != wanted:
            diff = sorted(set(saved.items()) ^ set(wanted.items()))[:6]
            raise IncompatibleCheckpointError(
                f"the checkpoint at step {step} in {self.directory} does not fit this run "
                f"(another network, space or strategy?); first differences (path, shape): "
                f"{diff}. Use another --workdir, or remove that checkpoint to start afresh."
            )
        abstract = jax.tree.map(
            lambda x: (
                jax.ShapeDtypeStruct(x.shape, x.dtype)
                if isinstance(x, jax.ShapeDtypeStruct)
                else ocp.utils.to_shape_dtype_struct(x)
            ),
            target,
        )
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleCheckpointError(
                f"cannot restore the checkpoint at step {step} in {self.directory} into this "
                f"run: {e}"
            ) from e
        return restored["state"], meta

    def close(self) -> None:
        self.manager.close()


def write_json(path: str, obj: Any) -> None:
    """Write JSON atomically (temp file + rename: a kill leaves the old file or the new one)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))
