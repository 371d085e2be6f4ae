"""REINFORCE with a moving-average baseline over the LSTM controller (Zoph & Le, ICLR 2017).

The controller's parameters theta follow the policy gradient of the expected reward J, estimated
on a batch of m sampled architectures (Zoph & Le, Sec. 3.2):

    grad J(theta) ~= 1/m sum_{k=1..m} sum_{t=1..T} grad log P(a_t | a_(t-1):1 ; theta) (R_k - b)

where b is an exponential moving average of the previous architectures' rewards. The step is
Adam on the loss

    L(theta) = -1/m sum_k (R_k - b) log P(a^k ; theta) - beta * 1/m sum_k H(a^k ; theta)

whose last term is an optional entropy bonus (beta = ``entropy_weight``, ENAS-style; 0 in the
paper). The baseline used for a batch is the EMA *before* it, b <- d b + (1 - d) mean_k R_k after
it; the first batch, with no previous reward, uses its own mean reward (its advantages then sum
to 0, as NAS-Bench-201's bias-corrected EMA gives on its first step).

The batch is the population: ``ask`` samples m = ``population_size`` architectures (member
``i`` from ``fold_in(key, i)``) and ``tell`` makes one controller update on them. With m = 1
(NAS-Bench-201's setting) the controller updates after every architecture.

Config options (``Reinforce.from_config(spec, m, section)``): ``hidden_size`` (LSTM units, 35
in the paper) is static; ``learning_rate``, ``baseline_decay`` and ``entropy_weight`` are
params (:class:`ReinforceParams`, traced: ``jax.vmap`` over them works and a new value does
not recompile). Adam's moments come from ``optax.scale_by_adam`` and the step is scaled by
``-learning_rate`` from the params: the same update as ``optax.adam(learning_rate)``.

ENAS's variant of the update (Pham et al. 2018; melodyguan/enas, src/cifar10/*_controller.py
``build_trainer``; used by :mod:`jnas.strategies.enas`) is built from the options here:
the controller's logit transforms and the macro skip penalty (``policy_loss``'s
``transform``, ``skip_weight``, ``skip_target``), the entropy added to the reward instead of
the loss (:func:`entropy_in_reward`), and a baseline moved by each reward before that
reward's advantage is taken (:func:`sequential_baseline`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jnas.spaces.discrete import DecisionSpec
from jnas.strategies import controller
from jnas.strategies.base import STRATEGIES, DiscreteStrategy, keep_if_finite, member_keys


@struct.dataclass
class ReinforceParams:
    """Attributes (float32 scalars, traced):
    learning_rate: Adam's step size.
    baseline_decay: d of the EMA baseline (NAS-Bench-201: 0.9), in [0, 1).
    entropy_weight: beta of the entropy bonus.
    """

    learning_rate: jax.Array = 1e-3
    baseline_decay: jax.Array = 0.9
    entropy_weight: jax.Array = 0.0


class ReinforceState(struct.PyTreeNode):
    """Attributes:
    params: controller parameters.
    opt_state: Adam's moments (``optax.scale_by_adam``).
    baseline: float32, the EMA of past rewards (valid once ``num_updates > 0``).
    num_updates: int32, controller updates so far.
    num_told: int32, rewards received so far.
    """

    params: dict
    opt_state: optax.OptState
    baseline: jax.Array
    num_updates: jax.Array
    num_told: jax.Array


_ADAM = optax.scale_by_adam()


def policy_loss(
    params,
    actions,
    rewards,
    baseline,
    spec: DecisionSpec,
    entropy_weight=0.0,
    *,
    transform=None,
    skip_weight: float = 0.0,
    skip_target: float = 0.4,
):
    """The REINFORCE surrogate loss whose gradient is minus the policy gradient.

    L = -1/m sum_k (R_k - b) log P(a^k) - beta 1/m sum_k H(a^k)
        [+ skip_weight 1/m sum_k skip_penalty(a^k)]

    Args:
      params: controller parameters.
      actions: int32 ``[m, length]`` sampled architectures.
      rewards: float32 ``[m]`` their rewards R_k.
      baseline: the baseline b, a scalar or one per architecture ``[m]`` (no gradient flows
        through it).
      spec: the space (static).
      entropy_weight: beta.
      transform: the controller's :class:`~jnas.strategies.controller.LogitTransform`
        (static) or None.
      skip_weight: the weight of ENAS's macro skip penalty
        (:func:`jnas.strategies.controller.skip_penalty`; a static float, 0: none).
      skip_target: its target skip probability, in (0, 1).

    Returns:
      ``(loss, mean entropy)``: the scalar loss, and 1/m sum_k H(a^k) (summed per-step
      entropies of the policy the actions were sampled from).
    """
    if transform is None and not skip_weight:  # REINFORCE as in Zoph & Le (the tabular runs)
        logp, ent = jax.vmap(lambda a: controller.log_prob_and_entropy(params, a, spec))(actions)
        penalty = 0.0
    else:

        def one(a):
            logp, ent, rows = controller.score(params, a, spec, transform=transform)
            pen = controller.skip_penalty(rows, spec, skip_target) if skip_weight else 0.0
            return logp, ent, pen

        logp, ent, penalty = jax.vmap(one)(actions)
        penalty = skip_weight * jnp.mean(penalty)
    advantage = jax.lax.stop_gradient(rewards - baseline)
    mean_ent = jnp.mean(ent)
    return -jnp.mean(advantage * logp) - entropy_weight * mean_ent + penalty, mean_ent


def entropy_in_reward(rewards, entropies, entropy_weight):
    """ENAS's reward: ``R_k + beta H(a^k)``, the sampled architecture's summed per-step
    entropy added to its reward (no gradient flows through it), instead of an entropy term
    in the loss (``*_controller.py``: ``self.reward += self.entropy_weight *
    self.sample_entropy``)."""
    return rewards + entropy_weight * jax.lax.stop_gradient(entropies)


def sequential_baseline(baseline, rewards, decay):
    """ENAS's baseline: moved by each reward, in order, before that reward's advantage.

    ``b_k = b_(k-1) - (1 - d) (b_(k-1) - R_k)`` (``tf.assign_sub`` under a control
    dependency of the reward in ``build_trainer``), starting from ``baseline``.

    Returns:
      ``(per-architecture baselines [m], the baseline after the last)``.
    """

    def step(b, r):
        b = b - (1.0 - decay) * (b - r)
        return b, b

    last, each = jax.lax.scan(step, jnp.asarray(baseline, jnp.float32), rewards)
    return each, last


@STRATEGIES.register("reinforce", kind="discrete")
@dataclasses.dataclass(frozen=True)
class Reinforce(DiscreteStrategy):
    """REINFORCE over the LSTM controller (see the module docstring).

    Attributes:
      spec: the decisions of the space (static).
      population_size: m, architectures per ``ask`` and per controller update (static).
      hidden_size: LSTM units of the controller (static).
    """

    spec: DecisionSpec
    population_size: int = 1
    hidden_size: int = controller.DEFAULT_HIDDEN_SIZE
    STATIC = ("hidden_size",)

    def __post_init__(self):
        if self.population_size < 1 or self.hidden_size < 1:
            raise ValueError(
                f"population_size and hidden_size must be >= 1, got {self.population_size}, "
                f"{self.hidden_size}"
            )

    @property
    def default_params(self) -> ReinforceParams:
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        return jax.tree.map(f32, ReinforceParams())

    def check_params(self, params: ReinforceParams) -> None:
        """``ValueError`` unless learning_rate > 0, 0 <= baseline_decay < 1 and
        entropy_weight >= 0, all finite (every value, if batched)."""
        lr, decay, beta = (
            np.asarray(v)
            for v in (params.learning_rate, params.baseline_decay, params.entropy_weight)
        )
        if not np.all(np.isfinite(lr) & (lr > 0.0)):
            raise ValueError(f"learning_rate must be finite and > 0, got {lr}")
        if not np.all((decay >= 0.0) & (decay < 1.0)):
            raise ValueError(f"baseline_decay must be in [0, 1), got {decay}")
        if not np.all(np.isfinite(beta) & (beta >= 0.0)):
            raise ValueError(f"entropy_weight must be finite and >= 0, got {beta}")

    def init(self, key: jax.Array, params=None) -> ReinforceState:
        """A fresh controller drawn from ``key``, Adam's zero moments, no baseline yet."""
        del params
        theta = controller.init(key, self.spec, self.hidden_size)
        zero = jnp.zeros((), jnp.int32)
        return ReinforceState(
            params=theta,
            opt_state=_ADAM.init(theta),
            baseline=jnp.zeros((), jnp.float32),
            num_updates=zero,
            num_told=zero,
        )

    def ask(self, key: jax.Array, state: ReinforceState, params=None):
        """m architectures sampled from the controller: ``(archs int32 [m, length], state)``."""
        del params
        keys = member_keys(key, self.population_size)
        sample = lambda k: controller.sample(state.params, k, self.spec)[0]
        return jax.vmap(sample)(keys), state

    def tell(self, state: ReinforceState, archs: jax.Array, rewards: jax.Array, params):
        """One controller update on the population's (architecture, reward) pairs.

        A non-finite reward leaves the state unchanged (check rewards on the host first, with
        :func:`jnas.strategies.base.check_reward`, to get an error instead).

        Returns:
          ``(state, metrics)``; metrics: ``baseline`` (the EMA after this batch),
          ``entropy`` (mean over the batch of the summed per-step entropy of the policy the
          batch was sampled from), ``advantage`` (mean R_k - b) and ``num_updates``.
        """
        p = params if params is not None else self.default_params
        archs = jnp.asarray(archs, jnp.int32)
        rewards = jnp.asarray(rewards, jnp.float32)
        batch_mean = jnp.mean(rewards)
        baseline = jnp.where(state.num_updates > 0, state.baseline, batch_mean)
        grads, entropy = jax.grad(policy_loss, has_aux=True)(
            state.params, archs, rewards, baseline, self.spec, p.entropy_weight
        )
        direction, opt_state = _ADAM.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: -p.learning_rate * u, direction)
        decay = p.baseline_decay
        new = state.replace(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            baseline=decay * baseline + (1.0 - decay) * batch_mean,
            num_updates=state.num_updates + 1,
            num_told=state.num_told + rewards.shape[0],
        )
        state = keep_if_finite(rewards, new, state)
        metrics = {
            "baseline": state.baseline,
            "entropy": entropy,
            "advantage": batch_mean - baseline,
            "num_updates": state.num_updates,
        }
        return state, metrics
