"""REINFORCE with a moving-average baseline over the LSTM controller (Zoph & Le, ICLR 2017).

The controller's parameters theta follow the policy gradient of the expected reward J, estimated
on a batch of m sampled architectures (Zoph & Le, Sec. 3.2):

    grad J(theta) ~= 1/m sum_{k=1..m} sum_{t=1..T} grad log P(a_t | a_(t-1):1 ; theta) (R_k - b)

where b is an exponential moving average of the previous architectures' rewards. The step is
Adam (optax) on the loss

    L(theta) = -1/m sum_k (R_k - b) log P(a^k ; theta) - beta * 1/m sum_k H(a^k ; theta)

whose last term is an optional entropy bonus (beta = `entropy_weight`, ENAS-style; 0 in the
paper). The baseline used for a batch is the EMA *before* it, b <- d b + (1 - d) mean_k R_k after
it; the first batch, with no previous reward, uses its own mean reward (its advantages then sum
to 0, as NAS-Bench-201's bias-corrected EMA gives on its first step).

`tell` buffers (architecture, reward) pairs and updates the controller when m of them are in:
with m = 1 (NAS-Bench-201's setting) it updates after every architecture.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jnas.spaces.discrete import DecisionSpec
from jnas.strategies import controller


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
    """Attributes:
    learning_rate: Adam's step size.
    baseline_decay: d of the EMA baseline (NAS-Bench-201: 0.9).
    batch_size: m, architectures per controller update.
    entropy_weight: beta of the entropy bonus.
    hidden_size: LSTM units of the controller (35 in the paper).
    """

    learning_rate: float = 1e-3
    baseline_decay: float = 0.9
    batch_size: int = 1
    entropy_weight: float = 0.0
    hidden_size: int = controller.DEFAULT_HIDDEN_SIZE

    @classmethod
    def make(cls, config=None) -> ReinforceConfig:
        """From None, a `ReinforceConfig`, or a mapping / `ConfigDict` of some of the fields."""
        if config is None or isinstance(config, cls):
            return config or cls()
        cfg = cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})
        if cfg.batch_size < 1 or not 0.0 <= cfg.baseline_decay < 1.0:
            raise ValueError(f"need batch_size >= 1 and 0 <= baseline_decay < 1, got {cfg}")
        return cfg


class ReinforceState(struct.PyTreeNode):
    """Attributes:
    params: controller parameters.
    opt_state: Adam's state.
    baseline: float32, the EMA of past rewards (valid once `num_updates > 0`).
    num_updates: int32, controller updates so far.
    buffer_actions: int32 `[m, length]`, architectures waiting for the next update.
    buffer_rewards: float32 `[m]`, their rewards.
    buffer_count: int32, how many of the m slots are filled.
    num_told: int32, rewards received so far.
    spec, config: static.
    """

    params: dict
    opt_state: optax.OptState
    baseline: jax.Array
    num_updates: jax.Array
    buffer_actions: jax.Array
    buffer_rewards: jax.Array
    buffer_count: jax.Array
    num_told: jax.Array
    spec: DecisionSpec = struct.field(pytree_node=False)
    config: ReinforceConfig = struct.field(pytree_node=False)


def _optimizer(cfg: ReinforceConfig) -> optax.GradientTransformation:
    return optax.adam(cfg.learning_rate)


def init(key: jax.Array, spec: DecisionSpec, config=None) -> ReinforceState:
    """A fresh controller, its Adam state, an empty buffer.

    Args:
      key: a PRNG key for the controller's initial parameters.
      spec: the space.
      config: `ReinforceConfig`, or a mapping / `ConfigDict` of some of its fields, or None.

    Returns:
      A `ReinforceState`.
    """
    cfg = ReinforceConfig.make(config)
    params = controller.init(key, spec, cfg.hidden_size)
    m = cfg.batch_size
    return ReinforceState(
        params=params,
        opt_state=_optimizer(cfg).init(params),
        baseline=jnp.zeros((), jnp.float32),
        num_updates=jnp.zeros((), jnp.int32),
        buffer_actions=jnp.zeros((m, spec.length), jnp.int32),
        buffer_rewards=jnp.zeros((m,), jnp.float32),
        buffer_count=jnp.zeros((), jnp.int32),
        num_told=jnp.zeros((), jnp.int32),
        spec=spec,
        config=cfg,
    )


def ask(state: ReinforceState, key: jax.Array) -> tuple[ReinforceState, jax.Array]:
    """Samples an architecture from the controller: `(state, arch int32[length])`."""
    actions, _, _ = controller.sample(state.params, key, state.spec)
    return state, actions


def policy_loss(params, actions, rewards, baseline, spec: DecisionSpec, entropy_weight=0.0):
    """The REINFORCE surrogate loss whose gradient is minus the policy gradient.

    L = -1/m sum_k (R_k - b) log P(a^k) - beta 1/m sum_k H(a^k)

    Args:
      params: controller parameters.
      actions: int32 `[m, length]` sampled architectures.
      rewards: float32 `[m]` their rewards R_k.
      baseline: the baseline b (no gradient flows through it).
      spec: the space (static).
      entropy_weight: beta.

    Returns:
      The scalar loss.
    """
    logp, ent = jax.vmap(lambda a: controller.log_prob_and_entropy(params, a, spec))(actions)
    advantage = jax.lax.stop_gradient(rewards - baseline)
    return -jnp.mean(advantage * logp) - entropy_weight * jnp.mean(ent)


def update(state: ReinforceState, actions: jax.Array, rewards: jax.Array) -> ReinforceState:
    """One controller update on a batch of m (architecture, reward) pairs, and the EMA baseline.

    Args:
      state: the current state.
      actions: int32 `[m, length]`.
      rewards: float32 `[m]`.

    Returns:
      The state with new parameters, optimizer state, baseline and `num_updates`.
    """
    cfg = state.config
    batch_mean = jnp.mean(rewards)
    baseline = jnp.where(state.num_updates > 0, state.baseline, batch_mean)
    grads = jax.grad(policy_loss)(
        state.params, actions, rewards, baseline, state.spec, cfg.entropy_weight
    )
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    return state.replace(
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        baseline=cfg.baseline_decay * baseline + (1.0 - cfg.baseline_decay) * batch_mean,
        num_updates=state.num_updates + 1,
    )


def tell(state: ReinforceState, arch: jax.Array, reward: jax.Array) -> ReinforceState:
    """Buffers (arch, reward); updates the controller when the buffer holds m pairs.

    A non-finite reward leaves the state unchanged (check rewards on the host first, with
    `jnas.strategies.discrete_registry.check_reward`, to get an error instead).
    """
    m = state.config.batch_size
    reward = jnp.asarray(reward, jnp.float32)
    filled = state.replace(
        buffer_actions=state.buffer_actions.at[state.buffer_count].set(
            jnp.asarray(arch, jnp.int32)
        ),
        buffer_rewards=state.buffer_rewards.at[state.buffer_count].set(reward),
        buffer_count=state.buffer_count + 1,
        num_told=state.num_told + 1,
    )
    flush = lambda s: update(s, s.buffer_actions, s.buffer_rewards).replace(
        buffer_count=jnp.zeros((), jnp.int32)
    )
    # With m = 1 every tell updates: no cond (which vmap would turn into computing both sides).
    new = (
        flush(filled)
        if m == 1
        else jax.lax.cond(filled.buffer_count == m, flush, lambda s: s, filled)
    )
    ok = jnp.isfinite(reward)
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
