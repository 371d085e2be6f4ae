"""The one-shot (supernet) core that every gradient strategy shares: state, optimizers, the
search step, the evaluation step, the config plumbing and the registration shape.

A strategy turns its architecture parameters ``alpha`` into the per-edge weights the
supernet mixes with (``arch_fn``: softmax for DARTS, a Gumbel sample for GDAS, ...), and
picks how ``alpha`` is updated (:mod:`jnas.strategies.bilevel`). The weights ``w``
(``params``), batch statistics and ``alpha`` are separate pytrees in :class:`SearchState`,
each with its own optax transform.

The step is one pure function ``step(state, train_batch, val_batch) -> (state, metrics)``
with two phases, an architecture phase (alpha on the validation batch) and a weight phase
(the weights on the training batch):

* DARTS's order (the default): alpha first, then the weights with the new alpha;
  GDAS's order (``weights_first``): the weights first, then alpha with the new weights;
* first order and ``fuse_phases`` (the default): both phases are one ``lax.scan`` of length
  2 (:func:`jnas.strategies.phases.fused_step`): XLA compiles the network's forward and
  backward pass once instead of twice; second order by finite differences and
  ``fuse_phases``: the five network evaluations are one ``lax.scan`` of length 5
  (:func:`jnas.strategies.phases.fused_fd_step`), compiled once instead of five times;
* before ``arch_start_step`` alpha stays fixed (a warm-up); with ``skip_warmup`` the
  architecture phase is skipped at run time (``lax.cond``: only its validation loss is
  computed, as PC-DARTS and P-DARTS do), else its update is only masked.

A step that sends the weights to infinity shows in the next step's losses, and
:meth:`jnas.runner.checkpoint.Checkpointer.save` refuses a state with a NaN or an infinity,
so a host loop never saves one (the step itself computes no extra norms: they would add a
reduction per parameter leaf to every step).

A gradient strategy is one module that registers a :class:`GradientStrategy`::

    STRATEGIES.register("my_method", kind="gradient")(
        GradientStrategy(build=build, title="My method",
                         configs={"cifar10": "my_method_cifar10",
                                  "fashion_mnist": "my_method_fashion_mnist"}))

where ``build(config, *, num_classes, steps_per_epoch, axis_name=None) -> OneShotSearch``
usually ends in :meth:`OneShotSearch.from_config`. The space comes from the config
(:func:`space_from_config`), never from a class the strategy names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jnas.ops import precision
from jnas.runner.parallel import classification_sums
from jnas.spaces.base import OneShotSpace, make_space
from jnas.strategies import bilevel

ArchFn = Callable[[Any, jax.Array, jax.Array], Any]  # (alpha, key, step) -> arch tree

# The config.model fields that describe the DARTS cell space when a config has no
# ``space`` section.
_MODEL_SPACE_FIELDS = ("primitives", "n_nodes", "multiplier", "stem_multiplier", "C", "layers")


class SearchState(struct.PyTreeNode):
    """The whole state of a one-shot search; a pytree, checkpointed as is."""

    step: jax.Array
    params: Any
    batch_stats: Any
    alpha: Any
    w_opt_state: Any
    a_opt_state: Any
    key: jax.Array


def epoch_cosine(lr: float, lr_min: float, epochs: int, steps_per_epoch: int):
    """PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min)`` stepped once per epoch."""
    cos = optax.cosine_decay_schedule(lr, max(epochs, 1), alpha=lr_min / lr)
    return lambda count: cos(count // steps_per_epoch)


def weight_optimizer(cfg: ml_collections.ConfigDict, epochs: int, steps_per_epoch: int):
    """DARTS weights: clip grad norm, L2 decay, SGD with momentum, cosine lr per epoch.

    Returns:
      ``(tx, lr_fn)``: the optax transform and the learning rate as a function of the step.
    """
    lr_fn = epoch_cosine(cfg.lr, cfg.lr_min, epochs, steps_per_epoch)
    parts = []
    if cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts += [
        optax.add_decayed_weights(cfg.weight_decay),
        optax.sgd(lr_fn, momentum=cfg.momentum or None),
    ]
    return optax.chain(*parts), lr_fn


def arch_optimizer(cfg: ml_collections.ConfigDict):
    """DARTS alphas: Adam with L2 weight decay added to the gradient (as PyTorch's Adam),
    after clipping the gradient's global norm when ``cfg.grad_clip`` is set (P-DARTS)."""
    tx = optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),
        optax.adam(cfg.lr, b1=cfg.get("b1", 0.5), b2=cfg.get("b2", 0.999)),
    )
    if cfg.get("grad_clip"):
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    return tx


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def softmax_weights(alpha):
    """``softmax(alpha)`` over the op axis of every leaf (on the device, float32)."""
    return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alpha)


def space_from_config(config: ml_collections.ConfigDict) -> OneShotSpace:
    """The one-shot space of a config: ``make_space(config.space)`` when the config has a
    ``space`` section, else the ``"darts"`` space with the shape of ``config.model``
    (``primitives``, ``n_nodes``, ``multiplier``, ``stem_multiplier``, ``C``, ``layers``).

    Raises:
      ValueError: the space has no supernet.
    """
    if "space" in config:
        space = make_space(config.space)
    else:
        m = config.model
        section = {"name": "darts", **{k: m[k] for k in _MODEL_SPACE_FIELDS if k in m}}
        space = make_space(section)
    if not space.is_one_shot:
        raise ValueError(
            f"search space {space.name!r} has no supernet: a gradient strategy needs a "
            "one-shot space"
        )
    return space


def supernet_from_config(config, space, num_classes: int, axis_name: str | None, **options):
    """``space.supernet(...)`` with the config's implementation switches (``model.vmap_edges``,
    ``model.remat``) and the pmap axis of its batch norms; ``options`` override."""
    m = config.model
    kw = dict(
        vmap_edges=m.get("vmap_edges", True),
        scan_edges=m.get("scan_edges", False),
        remat=m.get("remat", False),
    )
    kw.update(options)
    return space.supernet(num_classes=num_classes, bn_axis_name=axis_name, **kw)


@dataclasses.dataclass(frozen=True)
class OneShotSearch:
    """A bilevel supernet search, parametrised by the strategy's ``arch_fn``.

    Attributes:
      model: the supernet, called ``model.apply(vars, images, arch, train=...)``.
      init_alpha: ``key -> alpha``.
      arch_fn: ``(alpha, key, step) -> arch`` for training steps.
      eval_arch_fn: ``alpha -> arch`` for evaluation (deterministic).
      w_tx, a_tx: the optax transforms of weights and alpha.
      lr_fn: the weight learning rate per step (xi of the unrolled step).
      hypergradient: ``"first"``, ``"fd"`` or ``"exact"`` (DARTS's order only).
      weight_decay, momentum: folded into the unrolled step (2nd order).
      axis_name: the pmap axis, or None on one device.
      arch_start_step: alpha stays fixed before this step (a warm-up, PC-DARTS style).
      op_weights_fn: ``alpha -> {name: [num_edges, num_ops]}``, the op strengths that
        are logged (e.g. softmax of alpha).
      derive_fn: ``alpha (host arrays) -> architecture``, the discretization.
      fuse_phases: run the step's network evaluations as one ``lax.scan``: the two phases of
        a first-order step, the five evaluations of a finite-difference one
        (:mod:`jnas.strategies.phases`).
      weights_first: GDAS's order (weights on the training batch, then alpha on the
        validation batch with the new weights; first order only).
      skip_warmup: skip the architecture phase at run time before ``arch_start_step``
        (``lax.cond``) instead of masking its update.
      extra_metrics_fn: ``step -> {name: scalar}`` logged with every step (e.g. GDAS's
        temperature), or None.
      compute_dtype: the dtype the supernet computes in (:mod:`jnas.ops.precision`): the
        weights and the per-edge architecture weights are cast to it at the call; the
        weights, alpha, optimizer states, batch statistics and losses stay float32.
    """

    model: nn.Module
    init_alpha: Callable[[jax.Array], Any]
    arch_fn: ArchFn
    eval_arch_fn: Callable[[Any], Any]
    w_tx: optax.GradientTransformation
    a_tx: optax.GradientTransformation
    lr_fn: Callable[[jax.Array], jax.Array]
    hypergradient: str = "first"
    weight_decay: float = 0.0
    momentum: float = 0.0
    axis_name: str | None = None
    arch_start_step: int = 0
    op_weights_fn: Callable[[Any], Any] | None = None
    derive_fn: Callable[[Any], Any] | None = None
    fuse_phases: bool = True
    weights_first: bool = False
    skip_warmup: bool = False
    extra_metrics_fn: Callable[[jax.Array], dict] | None = None
    compute_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.hypergradient not in bilevel.HYPERGRADIENTS:
            raise ValueError(
                f"search.hypergradient must be one of {bilevel.HYPERGRADIENTS}, "
                f"got {self.hypergradient!r}"
            )
        if self.weights_first and self.hypergradient != "first":
            raise ValueError(
                "a search that updates the weights first takes the first-order alpha "
                f"gradient; hypergradient={self.hypergradient!r} is not supported"
            )

    @classmethod
    def from_config(
        cls,
        config: ml_collections.ConfigDict,
        *,
        steps_per_epoch: int,
        axis_name: str | None = None,
        w_tx: optax.GradientTransformation | None = None,
        lr_fn: Callable | None = None,
        **fields,
    ):
        """The search with the config's optimizers and search settings; ``fields`` (the
        strategy's ``model``, ``init_alpha``, ``arch_fn``, ... and any field it sets
        itself) complete or override them.

        Reads ``config.optim_w`` (:func:`weight_optimizer`, unless ``w_tx`` and ``lr_fn``
        are given), ``config.optim_alpha`` (:func:`arch_optimizer`), and ``config.search``:
        ``hypergradient``, ``arch_start_epoch`` (times ``steps_per_epoch``) and
        ``fuse_phases``.
        """
        s, ow = config.search, config.optim_w
        if w_tx is None:
            w_tx, lr_fn = weight_optimizer(ow, s.epochs, steps_per_epoch)
        kw = dict(
            w_tx=w_tx,
            a_tx=arch_optimizer(config.optim_alpha),
            lr_fn=lr_fn,
            hypergradient=s.hypergradient,
            weight_decay=ow.weight_decay,
            momentum=ow.momentum,
            axis_name=axis_name,
            arch_start_step=int(s.arch_start_epoch) * steps_per_epoch,
            fuse_phases=s.get("fuse_phases", True),
            compute_dtype=precision.compute_dtype(config.model.get("compute_dtype")),
        )
        if s.get("skip_warmup") is not None:
            kw["skip_warmup"] = bool(s.skip_warmup)
        kw.update(fields)
        return cls(**kw)

    def op_weights(self, state: SearchState):
        """The per-edge op strengths of the current alpha (host-side logging)."""
        return self.op_weights_fn(state.alpha)

    def genotype(self, state: SearchState):
        """The architecture derived from the current alpha (on the host)."""
        return self.derive_fn(jax.device_get(state.alpha))

    def init(self, key: jax.Array, sample_images: jax.Array) -> SearchState:
        """Initialise weights, batch stats, alpha and both optimizer states."""
        k_alpha, k_params, k_state = jax.random.split(key, 3)
        alpha = self.init_alpha(k_alpha)
        # Param init draws hundreds of tensors: the RBG generator keeps that HLO small
        # (its streams are reproducible per backend). lazy_init runs only the initializers,
        # not the forward pass; call init un-jitted (as the runner does): compiling it would
        # take as long as compiling the step (~100 s for the quickstart's supernet on a
        # 2-core CPU, all of it random-number code), eagerly it takes seconds.
        init_key = jax.random.key(jax.random.randint(k_params, (), 0, 2**31 - 1), impl="rbg")
        arch = self.eval_arch_fn(alpha)
        sample = jax.ShapeDtypeStruct(sample_images.shape, sample_images.dtype)
        variables = self.model.lazy_init(init_key, sample, arch, train=True)
        params = variables["params"]
        return SearchState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            alpha=alpha,
            w_opt_state=self.w_tx.init(params),
            a_opt_state=self.a_tx.init(alpha),
            key=k_state,
        )

    def _cast(self, tree):
        return precision.to_compute(tree, self.compute_dtype)

    def _loss_fn(self, batch_stats, key, step, train=True):
        def loss_fn(params, alpha, batch):
            arch = self.arch_fn(alpha, key, step) if train else self.eval_arch_fn(alpha)
            logits, updates = self.model.apply(
                {"params": self._cast(params), "batch_stats": batch_stats},
                self._cast(batch["image"]),
                self._cast(arch),
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.fold_in(key, 1)},
            )
            logits = precision.to_float32(logits)
            loss = cross_entropy(logits, batch["label"])
            return loss, (logits, updates["batch_stats"])

        return loss_fn

    # -- the step ------------------------------------------------------------------------

    def warming_up(self, state: SearchState) -> jax.Array | None:
        """A traced bool, true while the architecture phase is skipped; None when it never
        is (``skip_warmup`` off, or no warm-up)."""
        if not self.skip_warmup or self.arch_start_step <= 0:
            return None
        return state.step < self.arch_start_step

    def step(self, state: SearchState, train_batch, val_batch):
        """One search step; returns ``(state, metrics)``.

        The step's key splits into one key per phase, in the phases' order (DARTS: alpha
        then weights; GDAS: weights then alpha).
        """
        from jnas.strategies import phases  # the phase helpers build on this module

        key = jax.random.fold_in(state.key, state.step)
        first_key, second_key = jax.random.split(key)
        lr = self.lr_fn(state.step)
        skip = self.warming_up(state)
        if self.weights_first:
            batches, keys, arch_phase = (train_batch, val_batch), (first_key, second_key), 1
        else:
            batches, keys, arch_phase = (val_batch, train_batch), (first_key, second_key), 0
        if self.hypergradient == "first" and self.fuse_phases:
            new, metrics = phases.fused_step(
                self, state, batches, keys, arch_phase=arch_phase, skip_arch=skip
            )
        elif self.hypergradient == "fd" and self.fuse_phases and arch_phase == 0:
            new, metrics = phases.fused_fd_step(self, state, batches, keys, lr, skip_arch=skip)
        else:
            new, metrics = phases.two_phase_step(
                self, state, batches, keys, lr, arch_phase=arch_phase, skip_arch=skip
            )
        return self.finish(state, new, metrics, lr)

    def update_alpha(self, state, g_alpha, alpha, a_opt_state):
        """Adam step on alpha, masked before ``arch_start_step`` (a warm-up)."""
        a_updates, new_opt = self.a_tx.update(g_alpha, a_opt_state, alpha)
        active = state.step >= self.arch_start_step
        new_alpha = jax.tree.map(lambda a, u: jnp.where(active, a + u, a), alpha, a_updates)
        new_opt = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_opt, a_opt_state)
        return new_alpha, new_opt

    def update_weights(self, g_w, w_opt_state, params):
        """One step of the weight optimizer: ``(params, w_opt_state)``."""
        updates, w_opt_state = self.w_tx.update(g_w, w_opt_state, params)
        return optax.apply_updates(params, updates), w_opt_state

    def finish(self, state, new, metrics, lr):
        """The next state from the phases' ``(params, batch_stats, alpha, w_opt_state,
        a_opt_state)``, and the metrics with the learning rate and the extra metrics
        (averaged over devices under pmap)."""
        params, batch_stats, alpha, w_opt_state, a_opt_state = new
        metrics = dict(metrics, lr=lr)
        if self.extra_metrics_fn is not None:
            metrics.update(self.extra_metrics_fn(state.step))
        if self.axis_name is not None:
            metrics = jax.lax.pmean(metrics, self.axis_name)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=batch_stats,
            alpha=alpha,
            w_opt_state=w_opt_state,
            a_opt_state=a_opt_state,
        )
        return new_state, metrics

    def eval_step(self, state: SearchState, batch):
        """Loss and accuracy sums on a batch with running BN statistics (``model.eval()``);
        ``batch["weight"]`` (optional, 0 or 1 per example) masks out padding."""
        logits = self.model.apply(
            {"params": self._cast(state.params), "batch_stats": state.batch_stats},
            self._cast(batch["image"]),
            self._cast(self.eval_arch_fn(state.alpha)),
            train=False,
        )
        logits = precision.to_float32(logits)
        return classification_sums(logits, batch["label"], batch.get("weight"), self.axis_name)


@dataclasses.dataclass(frozen=True)
class GradientStrategy:
    """What a gradient strategy registers (``STRATEGIES.register(name, kind="gradient")``).

    Attributes:
      build: ``(config, *, num_classes, steps_per_epoch, axis_name=None[, carry]) ->
        OneShotSearch``; ``carry`` only for multi-stage strategies.
      title: the method's name in tables ("DARTS (1st order)").
      configs: data set -> config module under ``experiments/configs`` (``"cifar10"``: the
        benchmark's, ``"fashion_mnist"``: the comparison's).
      stages: ``config -> [config per stage]`` (one stage: ``[config]``).
      transfer: ``(searcher, state) -> carry`` (JSON) that the next stage's ``build``
        receives; None for single-stage strategies.
      budget: ``(config, *, epochs, layers) -> None``: puts the comparison's shared budget
        (total search epochs, supernet cells) into the method's config in place, with the
        method's own scaling (warm-ups, stages); None: ``search.epochs = epochs`` and
        ``model.layers = layers``.
      second_order: whether ``search.hypergradient`` may be ``"fd"`` or ``"exact"``.
      check_config: ``config -> None``, raising (``jnas.errors.ConfigError``, or any
        ``ValueError``) on settings the method cannot run; :mod:`jnas.validate` calls it
        before the workdir is touched or anything compiles. None: no checks of its own.
    """

    KIND: ClassVar[str] = "gradient"
    build: Callable[..., OneShotSearch]
    title: str
    configs: dict = dataclasses.field(default_factory=dict)
    stages: Callable[[Any], list] | None = None
    transfer: Callable[[OneShotSearch, SearchState], Any] | None = None
    budget: Callable[..., None] | None = None
    second_order: bool = True
    check_config: Callable[[Any], None] | None = None

    @property
    def staged(self) -> bool:
        return self.transfer is not None

    def stage_configs(self, config) -> list:
        """One config per stage."""
        return list(self.stages(config)) if self.stages is not None else [config]

    def __call__(self, config, *, num_classes, steps_per_epoch, axis_name=None, carry=None):
        """``build`` the search of ``config`` (a stage's config, with ``carry``)."""
        kw = {"carry": carry} if self.staged else {}
        return self.build(
            config,
            num_classes=num_classes,
            steps_per_epoch=steps_per_epoch,
            axis_name=axis_name,
            **kw,
        )

    def apply_budget(self, config, *, epochs: int, layers: int) -> None:
        """The comparison's budget in ``config`` (see ``budget``)."""
        if self.budget is not None:
            self.budget(config, epochs=epochs, layers=layers)
        else:
            config.search.epochs = epochs
            config.model.layers = layers


def gradient_strategy(name: str) -> GradientStrategy:
    """The gradient strategy registered as ``name`` (or loaded as ``"pkg.module:attr"``).

    Raises:
      UnknownNameError: no strategy of that name.
      ValueError: ``name`` is a discrete strategy.
    """
    from jnas.strategies.base import STRATEGIES

    entry = STRATEGIES.get(name)
    if not isinstance(entry, GradientStrategy):
        raise ValueError(
            f"strategy {name!r} is not a gradient strategy; gradient strategies: "
            f"{', '.join(STRATEGIES.names(kind='gradient'))}"
        )
    return entry
