"""The Gumbel-softmax sampler with a straight-through gradient, and its temperature schedule.

GDAS (Dong & Yang, CVPR 2019, Sec. 3.2) samples one op per edge from
``p = softmax(alpha)`` with the Gumbel-max trick and relaxes the argmax for the gradient::

    o_k  ~ Gumbel(0, 1)
    h~   = softmax((log p + o) / tau)                       (Eq. 5, the soft relaxation)
    index = argmax_k h~_k   (distributed as Categorical(p) for any tau > 0)
    h    = one_hot(index) - stop_gradient(h~) + h~           (forward: one-hot; backward: h~)

so that the forward pass uses the hard sample while ``d h / d alpha = d h~ / d alpha``
(straight-through). Sampling takes an explicit key and is pure, so it jits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gumbel_softmax(key: jax.Array, logits: jax.Array, tau: jax.Array | float, axis: int = -1):
    """A soft Gumbel-softmax sample ``softmax((log_softmax(logits) + g) / tau)`` (Eq. 5;
    SNAS's relaxed one-hot), one Gumbel draw ``g`` per entry of ``logits``."""
    g = jax.random.gumbel(key, logits.shape, logits.dtype)
    return jax.nn.softmax((jax.nn.log_softmax(logits, axis=axis) + g) / tau, axis=axis)


def gumbel_softmax_st(key: jax.Array, logits: jax.Array, tau: jax.Array | float, axis: int = -1):
    """Sample ``one_hot(argmax(log_softmax(logits) + g))`` with the soft gradient.

    Args:
      key: PRNG key; one independent Gumbel draw per entry of ``logits``.
      logits: unnormalised log-probabilities (``alpha``), e.g. ``[num_edges, num_ops]``.
      tau: the temperature (> 0) of the relaxation; it does not change the samples'
        distribution, only the gradient.
      axis: the category axis.

    Returns:
      ``(hard, index)``: the straight-through one-hot sample (same shape as ``logits``) and
      the sampled category (int32, ``logits`` without ``axis``).
    """
    soft = gumbel_softmax(key, logits, tau, axis)
    index = jnp.argmax(soft, axis=axis).astype(jnp.int32)
    one_hot = jax.nn.one_hot(index, logits.shape[axis], dtype=soft.dtype, axis=axis)
    hard = one_hot - jax.lax.stop_gradient(soft) + soft
    return hard, index


def check_temperatures(tau_max: float, tau_min: float) -> None:
    """Raise ``ValueError`` unless both ends of a linear schedule are positive."""
    for name, v in (("tau_max", tau_max), ("tau_min", tau_min)):
        if not v > 0:
            raise ValueError(
                f"the Gumbel-softmax temperature must stay positive, but {name}={v}: the "
                "linear schedule would reach zero or below (division by tau). GDAS uses "
                "tau_max=10, tau_min=0.1."
            )


def linear_temperature(tau_max: float, tau_min: float, epochs: int, steps_per_epoch: int):
    """GDAS's schedule: ``tau = tau_max - (tau_max - tau_min) * epoch / (epochs - 1)``.

    Constant within an epoch, ``tau_max`` in the first epoch and ``tau_min`` in the last,
    as the official code (``set_tau`` once per epoch).

    Returns:
      ``step -> tau`` (traceable).
    """
    check_temperatures(tau_max, tau_min)
    span = max(epochs - 1, 1)

    def tau(step):
        frac = jnp.minimum(step // steps_per_epoch, span).astype(jnp.float32) / span
        return tau_max * (1.0 - frac) + tau_min * frac  # exactly tau_min in the last epoch

    return tau
