"""Mixed precision: a network computed in bfloat16, everything it keeps in float32.

``config.model.compute_dtype`` (``"float32"``, the default, or ``"bfloat16"``) picks the dtype
a training or search step computes its network in. With ``"bfloat16"`` the step casts the
float32 weights (and a supernet's architecture weights) and the images to bfloat16 at the
call (:func:`to_compute`), and casts the logits back to float32 for the loss. What persists
stays float32: the weights, ``alpha``, the optimizer states, the batch-norm running
statistics (Flax's batch norm reduces in float32 whatever its input), and the gradients,
which the casts' transposes return in float32. This is what PyTorch's
``torch.autocast(dtype=torch.bfloat16)`` does around the forward pass. bfloat16 keeps
float32's exponent range, so no loss scaling is needed.

The casts are written here rather than taken from a mixed-precision library: they are one
``tree.map`` each, and the one library for it (DeepMind's ``jmp``) is no longer maintained.

On the CPU backend the native kernels (:mod:`jnas.ops.native`) take float32 only; a bfloat16
network runs on XLA's formulations there. The option is for accelerators; on the CPU it is
for checking the numbers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["COMPUTE_DTYPES", "compute_dtype", "to_compute", "to_float32"]

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str | None) -> Any:
    """The dtype named by ``config.model.compute_dtype`` (None: float32).

    Raises:
      ValueError: a name other than those of :data:`COMPUTE_DTYPES`.
    """
    if name is None:
        return jnp.dtype(jnp.float32)
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype {name!r} is not one of {', '.join(map(repr, COMPUTE_DTYPES))}"
        )
    return jnp.dtype(name)


def to_compute(tree: Any, dtype: Any) -> Any:
    """``tree`` with its float32 leaves cast to ``dtype`` (other leaves as they are); the tree
    itself when ``dtype`` is float32, so that a float32 step is the program it always was."""
    if jnp.dtype(dtype) == jnp.float32:
        return tree

    def cast(x):
        return x.astype(dtype) if jnp.result_type(x) == jnp.float32 else x

    return jax.tree.map(cast, tree)


def to_float32(x: jax.Array | None) -> jax.Array | None:
    """``x`` (logits) as float32, for the loss; None (a network without an auxiliary head)
    stays None."""
    return None if x is None else x.astype(jnp.float32)
