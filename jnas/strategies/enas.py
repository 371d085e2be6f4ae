"""ENAS: Efficient Neural Architecture Search via parameter sharing (Pham et al., ICML 2018).

Every architecture of a shared-weight space (:class:`jnas.spaces.base.SharedWeightSpace`:
``enas_micro``, ``enas_macro``) is a subgraph of one supergraph whose weights are shared.
The search alternates, as the official code does (melodyguan/enas, ``src/cifar10/main.py``):

1. one epoch of the shared weights on the search-train split, a fresh architecture sampled
   from the controller for every minibatch (:meth:`EnasSearch.step`: the sample, then
   :meth:`EnasSearch.train_step`, which takes the architecture as an int32 array: one
   compiled program for every architecture; the supergraph skips the unused ops with
   ``lax.switch`` on the traced index, see the spaces);
2. ``controller.train_steps`` controller updates (:meth:`EnasSearch.controller_step`), each
   on ``controller.num_aggregate`` sampled architectures whose reward is the child's
   accuracy on one validation minibatch (the official ``SyncReplicasOptimizer`` that
   aggregates ``controller_num_aggregate`` gradients before Adam applies them).

The controller is the Flax LSTM of :mod:`jnas.strategies.controller` and its update the
REINFORCE of :mod:`jnas.strategies.reinforce`, with ENAS's options: the logit transforms
(temperature, ``tanh_constant``, ``op_tanh_reduce`` at the op decisions), the entropy added
to the reward (``entropy_weight``), the baseline moved by each reward before that reward's
advantage (``baseline_decay``, the official ``bl_dec``), the macro skip penalty (KL of each
skip probability to ``skip_target``, times ``skip_weight``), and Adam with ``b1 = 0``,
``eps = 1e-3`` (``src/utils.py get_train_ops``). Where the jnas controller differs from the
official one: the micro space's inputs are categoricals with their own softmax heads here
(an attention over the earlier nodes there), the official micro op bias (``b_soft``
initialised at 10 for the first two ops, and the fixed ``b_soft_no_learn`` of the normal
cell) is not modelled, and the macro controller's entropy is the full entropy of each step
(``general_controller.py`` takes ``p(a) (-log p(a))`` of the sampled action only).

Batch norm: the supergraph's own (see the spaces). The reward's forward pass runs as the
official code's: with batch statistics and dropout for the micro space (``micro_child.py``
forces ``is_training = True`` whenever the architecture is searched), with running
statistics for the macro space (``general_child.py build_valid_rl``: ``is_training=False``):
``search.reward_train_mode``.

Derivation (the host loop, with :meth:`EnasSearch.derive_keys`): ``search.derive_samples``
architectures sampled from the final controller, each scored with the shared weights on the
same ``search.derive_batches`` validation minibatches; the best is the result (the paper:
"we sample several models from the trained policy, compute their rewards on a single
minibatch sampled from the validation set, and take the model with the highest reward").

The host loop is :func:`jnas.runner.enas.search` (the strategy kind ``"shared"``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jnas.errors import ConfigError
from jnas.runner.parallel import classification_sums
from jnas.spaces.base import SharedWeightSpace, make_space
from jnas.spaces.discrete import DecisionSpec
from jnas.strategies import controller, reinforce
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import accuracy, cross_entropy

# Key streams (fold_in of the state's key): every draw is a function of the state.
_TRAIN_ARCH, _DROPOUT, _CONTROLLER, _DERIVE = 1, 2, 3, 4


def op_decisions(spec: DecisionSpec) -> tuple[bool, ...]:
    """Which decisions choose an op (``op_tanh_reduce`` applies there): those whose name's
    last part starts with ``op`` (``normal/node0/op_a``, ``L3/op``)."""
    return tuple(d.name.rsplit("/", 1)[-1].startswith("op") for d in spec.decisions)


def cosine_restarts(lr_max: float, lr_min: float, t_0: int, t_mul: int, epochs: int):
    """The official child lr per epoch: cosine from ``lr_max`` to ``lr_min`` over ``T_i``
    epochs, restarting with ``T_(i+1) = t_mul T_i`` (SGDR; ``src/utils.py get_train_ops``,
    ``lr_cosine``), as an optax schedule of the epoch (the cycles covering ``epochs``)."""
    schedules, boundaries, start, t = [], [], 0, int(t_0)
    while True:
        schedules.append(optax.cosine_decay_schedule(lr_max, t, alpha=lr_min / lr_max))
        start += t
        if start >= epochs:
            break
        boundaries.append(start)
        t *= int(t_mul)
    return optax.join_schedules(schedules, boundaries)


def weight_optimizer(cfg: ml_collections.ConfigDict, epochs: int, steps_per_epoch: int):
    """The official child optimizer: L2 (``l2_reg * sum w^2`` added to the loss, i.e.
    ``2 l2_reg w`` added to the gradient), optional clipping of the global norm, SGD with
    Nesterov momentum, the lr of :func:`cosine_restarts` per epoch.

    Returns:
      ``(tx, lr_fn)``.
    """
    per_epoch = cosine_restarts(cfg.lr_max, cfg.lr_min, cfg.T_0, cfg.T_mul, epochs)
    lr_fn = lambda count: per_epoch(count // steps_per_epoch)  # noqa: E731
    parts = []
    if cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts += [
        optax.add_decayed_weights(2.0 * cfg.l2_reg),
        optax.sgd(lr_fn, momentum=cfg.momentum or None, nesterov=bool(cfg.nesterov)),
    ]
    return optax.chain(*parts), lr_fn


class EnasState(struct.PyTreeNode):
    """The whole state of an ENAS search; a pytree, checkpointed as is.

    Attributes:
      step: shared-weight steps done.
      params, batch_stats: the supergraph's variables.
      opt_state: the weights' optimizer state.
      controller: the controller's :class:`jnas.strategies.reinforce.ReinforceState`
        (parameters, Adam's moments, the baseline, updates done).
      key: the search's PRNG key (every draw folds in a stream and a counter).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    controller: reinforce.ReinforceState
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class EnasSearch:
    """An ENAS search over one shared-weight space (see the module docstring).

    Attributes:
      space: the shared-weight space.
      model: its supergraph, ``model.apply(vars, images, arch, train=...)``.
      w_tx, lr_fn: the weights' optax transform and learning rate per step.
      ctrl_tx: the controller's optax transform.
      transform: the controller's logit transforms.
      hidden_size: LSTM units of the controller.
      entropy_weight: beta (added to the reward with ``entropy_in_reward``, else a loss term).
      entropy_in_reward: ENAS's reward ``acc + beta H``.
      baseline_decay: the baseline's EMA decay (moved by each reward in order).
      skip_weight, skip_target: the macro skip penalty (0: none).
      num_aggregate: architectures per controller update.
      reward_train_mode: the reward's forward pass with batch statistics and dropout.
      axis_name: the pmap axis, or None on one device.
    """

    space: SharedWeightSpace
    model: nn.Module
    w_tx: optax.GradientTransformation
    lr_fn: Callable[[jax.Array], jax.Array]
    ctrl_tx: optax.GradientTransformation
    transform: controller.LogitTransform
    hidden_size: int = 64
    entropy_weight: float = 0.0
    entropy_in_reward: bool = True
    baseline_decay: float = 0.99
    skip_weight: float = 0.0
    skip_target: float = 0.4
    num_aggregate: int = 1
    reward_train_mode: bool = False
    axis_name: str | None = None

    @property
    def spec(self) -> DecisionSpec:
        return self.space.spec

    # -- state ---------------------------------------------------------------------------

    def init(self, key: jax.Array, sample_images: jax.Array) -> EnasState:
        """The supergraph's variables (``lazy_init``, un-jitted as the one-shot init), the
        weights' optimizer state and a fresh controller."""
        k_params, k_ctrl, k_state = jax.random.split(key, 3)
        init_key = jax.random.key(jax.random.randint(k_params, (), 0, 2**31 - 1), impl="rbg")
        arch = jax.ShapeDtypeStruct((self.spec.length,), jnp.int32)
        sample = jax.ShapeDtypeStruct(sample_images.shape, sample_images.dtype)
        variables = self.model.lazy_init(init_key, sample, arch, train=True)
        params = variables["params"]
        theta = controller.init(k_ctrl, self.spec, self.hidden_size)
        zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731  (distinct buffers: donated)
        ctrl = reinforce.ReinforceState(
            params=theta,
            opt_state=self.ctrl_tx.init(theta),
            baseline=jnp.zeros((), jnp.float32),  # the official baseline starts at 0
            num_updates=zero(),
            num_told=zero(),
        )
        return EnasState(
            step=zero(),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.w_tx.init(params),
            controller=ctrl,
            key=k_state,
        )

    # -- the controller --------------------------------------------------------------------

    def sample(self, ctrl_params, key: jax.Array) -> jax.Array:
        """One architecture (int32 ``[spec.length]``) from the controller."""
        return controller.sample(ctrl_params, key, self.spec, transform=self.transform)[0]

    def sample_with_entropy(self, ctrl_params, key: jax.Array):
        """``(arch, summed per-step entropy)`` of one sample."""
        arch, _, ent = controller.sample(ctrl_params, key, self.spec, transform=self.transform)
        return arch, ent

    # -- the shared weights ------------------------------------------------------------------

    def _apply(self, state, images, arch, *, train: bool, key=None):
        """Logits (and the new batch statistics when ``train``)."""
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        rngs = {"dropout": key} if key is not None else {}
        if train:
            logits, updates = self.model.apply(
                variables, images, arch, train=True, mutable=["batch_stats"], rngs=rngs
            )
            return logits, updates["batch_stats"]
        return self.model.apply(variables, images, arch, train=False, rngs=rngs), None

    def train_step(self, state: EnasState, arch: jax.Array, batch) -> tuple[EnasState, dict]:
        """One SGD step of the shared weights on ``batch`` through the child ``arch`` (an
        int32 array: a new architecture does not recompile)."""
        key = jax.random.fold_in(jax.random.fold_in(state.key, _DROPOUT), state.step)

        def loss_fn(params):
            logits, stats = self._apply(
                state.replace(params=params), batch["image"], arch, train=True, key=key
            )
            return cross_entropy(logits, batch["label"]), (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if self.axis_name is not None:
            grads = jax.lax.pmean(grads, self.axis_name)
        updates, opt_state = self.w_tx.update(grads, state.opt_state, state.params)
        metrics = {
            "train_loss": loss,
            "train_acc": accuracy(logits, batch["label"]),
            "lr": self.lr_fn(state.step),
        }
        if self.axis_name is not None:
            metrics = jax.lax.pmean(metrics, self.axis_name)
        new = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=stats,
            opt_state=opt_state,
        )
        return new, metrics

    def step(self, state: EnasState, batch):
        """A fresh architecture from the controller (key: the step), then :meth:`train_step`;
        returns ``(state, metrics, arch)``."""
        key = jax.random.fold_in(jax.random.fold_in(state.key, _TRAIN_ARCH), state.step)
        arch = self.sample(state.controller.params, key)
        state, metrics = self.train_step(state, arch, batch)
        return state, metrics, arch

    def accuracy_sums(self, state: EnasState, arch, batch, key=None):
        """``{"loss_sum", "correct", "count"}`` of the child ``arch`` on ``batch`` in the
        reward's mode (psummed over devices); ``key``: the dropout key in train mode."""
        logits, _ = self._apply(
            state,
            batch["image"],
            arch,
            train=self.reward_train_mode,
            key=key if self.reward_train_mode else None,
        )
        return classification_sums(logits, batch["label"], batch.get("weight"), self.axis_name)

    def controller_step(self, state: EnasState, val_stack):
        """One controller update on ``num_aggregate`` architectures.

        Args:
          state: the search state.
          val_stack: ``{"image": [B, A, H, W, C], "label": [B, A]}``: the A validation
            minibatches of the A samples, batch-major (so that a pmap shards B).

        Returns:
          ``(state, metrics, archs [A, length], accs [A])``.
        """
        ctrl = state.controller
        base = jax.random.fold_in(jax.random.fold_in(state.key, _CONTROLLER), ctrl.num_updates)
        images = jnp.swapaxes(val_stack["image"], 0, 1)
        labels = jnp.swapaxes(val_stack["label"], 0, 1)

        def one(_, xs):
            i, x, y = xs
            k = jax.random.fold_in(base, i)
            arch, ent = self.sample_with_entropy(ctrl.params, k)
            sums = self.accuracy_sums(
                state, arch, {"image": x, "label": y}, jax.random.fold_in(k, 1)
            )
            return None, (arch, sums["correct"] / sums["count"], ent)

        idx = jnp.arange(images.shape[0])
        _, (archs, accs, ents) = jax.lax.scan(one, None, (idx, images, labels))
        new_ctrl, metrics = self.controller_update(ctrl, archs, accs, ents)
        return state.replace(controller=new_ctrl), metrics, archs, accs

    def controller_update(self, ctrl: reinforce.ReinforceState, archs, accs, entropies):
        """One REINFORCE update of the controller on sampled ``archs`` ``[A, length]``, their
        accuracies ``[A]`` and summed per-step entropies ``[A]`` (ENAS's options, see the
        module docstring); returns ``(controller state, metrics)``."""
        rewards = accs
        beta_in_loss = self.entropy_weight
        if self.entropy_in_reward:
            rewards = reinforce.entropy_in_reward(accs, entropies, self.entropy_weight)
            beta_in_loss = 0.0
        baselines, baseline = reinforce.sequential_baseline(
            ctrl.baseline, rewards, self.baseline_decay
        )
        grads, entropy = jax.grad(reinforce.policy_loss, has_aux=True)(
            ctrl.params,
            archs,
            rewards,
            baselines,
            self.spec,
            beta_in_loss,
            transform=self.transform,
            skip_weight=self.skip_weight,
            skip_target=self.skip_target,
        )
        updates, opt_state = self.ctrl_tx.update(grads, ctrl.opt_state, ctrl.params)
        new = ctrl.replace(
            params=optax.apply_updates(ctrl.params, updates),
            opt_state=opt_state,
            baseline=baseline,
            num_updates=ctrl.num_updates + 1,
            num_told=ctrl.num_told + archs.shape[0],
        )
        metrics = {
            "reward": jnp.mean(rewards),
            "val_acc": jnp.mean(accs),
            "baseline": baseline,
            "entropy": entropy,
            "advantage": jnp.mean(rewards - baselines),
        }
        if controller.anchor_positions(self.spec).max(initial=-1) >= 0:
            metrics["skip_rate"] = jnp.mean(controller.skip_rate(archs, self.spec))
        return new, metrics

    def derive_keys(self, state: EnasState, n: int) -> jax.Array:
        """The keys of the ``n`` samples of the final derivation."""
        base = jax.random.fold_in(state.key, _DERIVE)
        return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(n))


# -- config ------------------------------------------------------------------------------


def space_from_config(config) -> SharedWeightSpace:
    """The shared-weight space of ``config.space``.

    Raises:
      ConfigError: the space has no supergraph.
    """
    space = make_space(config.space)
    if not space.is_shared_weight:
        raise ConfigError(
            f"space.name: search space {space.name!r} has no shared-weight supergraph; ENAS "
            "searches a SharedWeightSpace (enas_micro, enas_macro)"
        )
    return space


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def logit_transform(config, spec: DecisionSpec) -> controller.LogitTransform:
    """The controller's :class:`~jnas.strategies.controller.LogitTransform` from
    ``config.controller`` (``temperature``, ``tanh_constant``, ``op_tanh_reduce``,
    ``symmetric_anchors``); the op decisions by name (:func:`op_decisions`)."""
    c = config.controller
    return controller.LogitTransform(
        temperature=c.get("temperature"),
        tanh_constant=c.get("tanh_constant"),
        op_tanh_reduce=c.get("op_tanh_reduce", 1.0),
        op_decisions=op_decisions(spec),
        symmetric_anchors=bool(c.get("symmetric_anchors", False)),
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    """Reject settings ENAS cannot run, before anything compiles (every problem at once).

    Raises:
      ConfigError: naming each key and what it must be.
    """
    problems = []
    c = config.get("controller")
    if c is None:
        raise ConfigError("controller: missing (ENAS needs the controller's settings)")

    def need(key, ok, what):
        if key in c and not ok(c[key]):
            problems.append(f"controller.{key}: {c[key]!r} is not {what}")

    for key in ("temperature", "tanh_constant"):
        need(key, lambda v: v is None or (_finite(v) and v > 0), "None or a finite number > 0")
    need("op_tanh_reduce", lambda v: _finite(v) and v > 0, "a finite number > 0")
    need("learning_rate", lambda v: _finite(v) and v > 0, "a finite number > 0")
    need("b1", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)")
    need("b2", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)")
    need("eps", lambda v: _finite(v) and v > 0, "a finite number > 0")
    need("baseline_decay", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)")
    need("entropy_weight", lambda v: _finite(v) and v >= 0, "a finite number >= 0")
    need("skip_weight", lambda v: _finite(v) and v >= 0, "a finite number >= 0")
    need("skip_target", lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)")
    is_int = lambda lo: lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo  # noqa: E731
    need("hidden_size", is_int(1), "an integer >= 1")
    need("num_aggregate", is_int(1), "an integer >= 1")
    need("train_steps", is_int(0), "an integer >= 0")
    need("train_every", is_int(1), "an integer >= 1")
    s = config.search
    for key, lo in (("derive_samples", 1), ("derive_batches", 1)):
        v = s.get(key, 1)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
            problems.append(f"search.{key}: {v!r} is not an integer >= {lo}")
    w = config.optim_w
    for key in ("lr_max", "lr_min"):
        if not (_finite(w.get(key)) and w.get(key) > 0):
            problems.append(f"optim_w.{key}: {w.get(key)!r} is not a finite number > 0")
    for key in ("T_0", "T_mul"):
        v = w.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            problems.append(f"optim_w.{key}: {v!r} is not an integer >= 1")
    if not (_finite(w.get("l2_reg")) and w.get("l2_reg") >= 0):
        problems.append(f"optim_w.l2_reg: {w.get('l2_reg')!r} is not a finite number >= 0")
    if problems:
        raise ConfigError("; ".join(problems))
    space = space_from_config(config)
    logit_transform(config, space.spec)  # raises ValueError for anything left


def supergraph_from_config(config, space, num_classes: int, axis_name: str | None):
    """``space.supergraph(...)`` with ``config.supergraph``'s options (if any) and the pmap
    axis of its batch norms (where the supergraph takes ``bn_axis_name``)."""
    options = dict(config.get("supergraph") or {})
    params = inspect.signature(space.supergraph).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if axis_name is not None and (takes_any or "bn_axis_name" in params):
        options["bn_axis_name"] = axis_name
    return space.supergraph(num_classes=num_classes, **options)


def build(config, *, num_classes: int, steps_per_epoch: int, axis_name: str | None = None):
    """The :class:`EnasSearch` of a config (``experiments/configs/enas_*.py``)."""
    check_config(config)
    space = space_from_config(config)
    c = config.controller
    w_tx, lr_fn = weight_optimizer(config.optim_w, config.search.epochs, steps_per_epoch)
    # The official controller optimizer: Adam(lr, beta1=0.0, epsilon=1e-3), no decay
    # (src/utils.py get_train_ops, optim_algo="adam"; main.py lr_dec_every=1000000).
    ctrl_tx = optax.adam(c.learning_rate, b1=c.get("b1", 0.0), b2=c.get("b2", 0.999), eps=c.eps)
    return EnasSearch(
        space=space,
        model=supergraph_from_config(config, space, num_classes, axis_name),
        w_tx=w_tx,
        lr_fn=lr_fn,
        ctrl_tx=ctrl_tx,
        transform=logit_transform(config, space.spec),
        hidden_size=c.hidden_size,
        entropy_weight=float(c.entropy_weight),
        entropy_in_reward=bool(c.entropy_in_reward),
        baseline_decay=float(c.baseline_decay),
        skip_weight=float(c.get("skip_weight", 0.0) or 0.0),
        skip_target=float(c.get("skip_target", 0.4)),
        num_aggregate=int(c.num_aggregate),
        reward_train_mode=bool(config.search.reward_train_mode),
        axis_name=axis_name,
    )


def apply_budget(config, *, epochs: int, layers: int) -> None:
    """The comparison's budget: ``search.epochs`` and the supergraph's cells
    (``space.layers``; a space without cells keeps its depth)."""
    config.search.epochs = epochs
    if "layers" in config.space:
        config.space.layers = layers


@dataclasses.dataclass(frozen=True)
class SharedWeightStrategy:
    """What a shared-weight (ENAS-style) strategy registers
    (``STRATEGIES.register(name, kind="shared")``); the shape of
    :class:`jnas.strategies.oneshot.GradientStrategy` where the tools need it (``title``,
    ``configs``, ``apply_budget``, ``check_config``, ``stage_configs``).

    Attributes:
      build: ``(config, *, num_classes, steps_per_epoch, axis_name=None) -> EnasSearch``.
      title: the method's name in tables.
      configs: data set -> config module under ``experiments/configs``.
      budget: ``(config, *, epochs, layers) -> None`` (the comparison's budget).
      check_config: ``config -> None``, raising ``ConfigError`` before anything compiles.
    """

    KIND: ClassVar[str] = "shared"
    build: Callable[..., EnasSearch]
    title: str
    configs: dict = dataclasses.field(default_factory=dict)
    budget: Callable[..., None] | None = None
    check_config: Callable[[Any], None] | None = None
    stages: ClassVar[None] = None
    second_order: ClassVar[bool] = False

    def stage_configs(self, config) -> list:
        return [config]

    def __call__(self, config, *, num_classes, steps_per_epoch, axis_name=None, carry=None):
        del carry
        return self.build(
            config, num_classes=num_classes, steps_per_epoch=steps_per_epoch, axis_name=axis_name
        )

    def apply_budget(self, config, *, epochs: int, layers: int) -> None:
        if self.budget is not None:
            self.budget(config, epochs=epochs, layers=layers)
        else:
            config.search.epochs = epochs


def shared_strategy(name: str) -> SharedWeightStrategy:
    """The shared-weight strategy registered as ``name``.

    Raises:
      UnknownNameError: no strategy of that name.
      ValueError: ``name`` is another kind of strategy.
    """
    entry = STRATEGIES.get(name)
    if not isinstance(entry, SharedWeightStrategy):
        raise ValueError(
            f"strategy {name!r} is not a shared-weight strategy; those: "
            f"{', '.join(STRATEGIES.names(kind='shared'))}"
        )
    return entry


STRATEGIES.register("enas", kind="shared")(
    SharedWeightStrategy(
        build=build,
        title="ENAS",
        configs={"cifar10": "enas_micro_cifar10", "fashion_mnist": "enas_micro_fashion_mnist"},
        budget=apply_budget,
        check_config=check_config,
    )
)
