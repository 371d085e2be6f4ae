"""SNAS-style relaxation: Stochastic Neural Architecture Search (Xie, Zheng, Liu & Lin, ICLR
2019), as a variant in the DARTS loop.

Every edge mixes all candidate ops, as DARTS does (:class:`jnas.spaces.darts.MixedOp`), but
with a *soft* Gumbel-softmax sample of the op weights instead of ``softmax(alpha)``
(SNAS Eq. 3-4)::

    Z_edge = softmax((log_softmax(alpha_edge) + g) / tau),   g ~ Gumbel(0, 1)

one fresh sample per edge and training step (:func:`jnas.strategies.gumbel.gumbel_softmax`),
so that the gradient reaches alpha through the relaxed sample. The temperature falls
exponentially per epoch, ``tau = max(tau_min, tau_max * tau_decay ** epoch)`` (SNAS anneals
from 1.0; the decay and floor are this config's choices, ``config.snas``).

What differs from the paper: SNAS updates the weights and alpha on the same training data
with one generic loss and adds a resource constraint (a cost term on the sampled ops); here
there is no resource constraint, and the updates are DARTS's first-order bilevel ones
(alpha on the validation half, then the weights on the training half). Evaluation passes
use ``softmax(alpha)``, and the genotype is derived by the DARTS rule on
``log_softmax(alpha)`` (as every strategy here), so that methods compare on the same
footing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jnas.spaces.darts import log_softmax64
from jnas.strategies import gumbel, oneshot
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import softmax_weights


def exponential_temperature(tau_max: float, tau_min: float, decay: float, steps_per_epoch: int):
    """``step -> max(tau_min, tau_max * decay ** epoch)`` (traceable; constant per epoch)."""
    gumbel.check_temperatures(tau_max, tau_min)
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"snas.tau_decay must be in (0, 1], got {decay}")

    def tau(step):
        epoch = (step // steps_per_epoch).astype(jnp.float32)
        return jnp.maximum(tau_min, tau_max * decay**epoch)

    return tau


def build(
    config: ml_collections.ConfigDict,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
) -> oneshot.OneShotSearch:
    """Build the SNAS-style search from a config (``experiments/configs/snas_*.py``: the
    DARTS sections plus ``snas``: ``tau_max``, ``tau_min``, ``tau_decay``)."""
    s = config.snas
    tau_fn = exponential_temperature(s.tau_max, s.tau_min, s.tau_decay, steps_per_epoch)
    space = oneshot.space_from_config(config)

    def arch_fn(alpha, key, step):
        tau = tau_fn(step)
        keys = jax.random.split(key, len(alpha))
        return {t: gumbel.gumbel_softmax(k, alpha[t], tau) for t, k in zip(sorted(alpha), keys)}

    return oneshot.OneShotSearch.from_config(
        config,
        steps_per_epoch=steps_per_epoch,
        axis_name=axis_name,
        model=oneshot.supernet_from_config(config, space, num_classes, axis_name),
        init_alpha=lambda key: space.init_alpha(key, config.search.alpha_init_scale),
        arch_fn=arch_fn,
        eval_arch_fn=softmax_weights,
        op_weights_fn=softmax_weights,
        derive_fn=lambda alpha: space.derive(log_softmax64(alpha)),
        hypergradient="first",
        extra_metrics_fn=lambda step: {"tau": tau_fn(step)},
    )


STRATEGIES.register("snas", kind="gradient")(
    oneshot.GradientStrategy(
        build=build,
        title="SNAS (relaxation only)",
        configs={"fashion_mnist": "snas_fashion_mnist"},
        second_order=False,
    )
)
