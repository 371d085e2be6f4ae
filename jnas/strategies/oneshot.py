"""What the one-shot (supernet) strategies share: state, optimizers and the search step.

A strategy turns its architecture parameters ``alpha`` into the per-edge weights the
supernet mixes with (``arch_fn``: softmax for DARTS, a Gumbel sample for GDAS, ...), and
picks how ``alpha`` is updated (:mod:`jnas.strategies.bilevel`). The weights ``w``
(``params``), batch statistics and ``alpha`` are separate pytrees in :class:`SearchState`,
each with its own optax transform.

The step is one pure function ``step(state, train_batch, val_batch) -> (state, metrics)``.
Following the DARTS code, alpha is updated first (on the validation batch), then the weights
(on the training batch, with the new alpha).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jnas.strategies import bilevel

ArchFn = Callable[[Any, jax.Array, jax.Array], Any]  # (alpha, key, step) -> arch tree


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
    """DARTS alphas: Adam with L2 weight decay added to the gradient (as PyTorch's Adam)."""
    return optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),
        optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2),
    )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == labels)


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
      hypergradient: ``"first"``, ``"fd"`` or ``"exact"``.
      weight_decay, momentum: folded into the unrolled step (2nd order).
      axis_name: the pmap axis, or None on one device.
      arch_start_step: alpha stays fixed before this step (a warm-up, PC-DARTS style).
      op_weights_fn: ``alpha -> {cell_type: [num_edges, num_ops]}``, the op strengths that
        are logged (e.g. softmax of alpha).
      derive_fn: ``alpha -> Genotype``, the discretization.
      fuse_phases: first order only: run the alpha and weight phases as one ``lax.scan``
        (one compiled forward/backward pass instead of two; about half the compile time).
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

    def op_weights(self, state: SearchState):
        """The per-edge op strengths of the current alpha (host-side logging)."""
        return self.op_weights_fn(state.alpha)

    def genotype(self, state: SearchState):
        """The genotype derived from the current alpha."""
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

    def _loss_fn(self, batch_stats, key, step, train=True):
        def loss_fn(params, alpha, batch):
            arch = self.arch_fn(alpha, key, step) if train else self.eval_arch_fn(alpha)
            logits, updates = self.model.apply(
                {"params": params, "batch_stats": batch_stats},
                batch["image"],
                arch,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.fold_in(key, 1)},
            )
            loss = cross_entropy(logits, batch["label"])
            return loss, (logits, updates["batch_stats"])

        return loss_fn

    def step(self, state: SearchState, train_batch, val_batch):
        """One search step: alpha on ``val_batch``, then weights on ``train_batch``."""
        key = jax.random.fold_in(state.key, state.step)
        k_arch, k_w = jax.random.split(key)
        lr = self.lr_fn(state.step)
        if self.hypergradient == "first" and self.fuse_phases:
            return self._fused_first_order_step(state, train_batch, val_batch, k_arch, k_w, lr)

        # Architecture step.
        g_alpha, val_loss, (val_logits, bs_val) = bilevel.alpha_gradient(
            self._loss_fn(state.batch_stats, k_arch, state.step),
            state.params,
            state.alpha,
            train_batch,
            val_batch,
            method=self.hypergradient,
            xi=lr,
            weight_decay=self.weight_decay,
            momentum_buffer=bilevel.momentum_buffer(state.w_opt_state),
            momentum=self.momentum,
            axis_name=self.axis_name,
        )
        alpha, a_opt_state = self._update_alpha(state, g_alpha, state.alpha, state.a_opt_state)
        # First order: the validation forward ran on the real weights, keep its BN stats.
        batch_stats = bs_val if self.hypergradient == "first" else state.batch_stats

        # Weight step.
        g_w, train_loss, (train_logits, batch_stats) = bilevel.weight_gradient(
            self._loss_fn(batch_stats, k_w, state.step),
            state.params,
            alpha,
            train_batch,
            axis_name=self.axis_name,
        )
        w_updates, w_opt_state = self.w_tx.update(g_w, state.w_opt_state, state.params)
        params = optax.apply_updates(state.params, w_updates)

        metrics = {
            "train_loss": train_loss,
            "train_acc": accuracy(train_logits, train_batch["label"]),
            "val_loss": val_loss,
            "val_acc": accuracy(val_logits, val_batch["label"]),
            "grad_norm_w": optax.global_norm(g_w),
            "grad_norm_alpha": optax.global_norm(g_alpha),
        }
        new = (params, batch_stats, alpha, w_opt_state, a_opt_state)
        return self._finish(state, new, metrics, lr)

    def _update_alpha(self, state, g_alpha, alpha, a_opt_state):
        """Adam step on alpha, skipped during the warm-up (``arch_start_step``)."""
        a_updates, new_opt = self.a_tx.update(g_alpha, a_opt_state, alpha)
        active = state.step >= self.arch_start_step
        new_alpha = jax.tree.map(lambda a, u: jnp.where(active, a + u, a), alpha, a_updates)
        new_opt = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_opt, a_opt_state)
        return new_alpha, new_opt

    def _finish(self, state, new, metrics, lr):
        params, batch_stats, alpha, w_opt_state, a_opt_state = new
        metrics = dict(metrics, lr=lr)
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

    def _fused_first_order_step(self, state, train_batch, val_batch, k_arch, k_w, lr):
        """The first-order step with both phases as one ``lax.scan`` of length 2.

        Phase 0 (validation batch) updates alpha, phase 1 (training batch, new alpha) the
        weights: the same computation as the two-phase step, but XLA compiles the network's
        forward and backward pass once instead of twice, which halves the compile time (the
        price: phase 0 also computes weight gradients it discards).
        """
        batches = jax.tree.map(lambda v, t: jnp.stack([v, t]), val_batch, train_batch)
        keys = jnp.stack([k_arch, k_w])
        grad_fn = bilevel.weight_and_alpha_gradient

        def phase_fn(carry, xs):
            params, bs, alpha, w_opt, a_opt = carry
            phase, batch, key = xs
            (g_w, g_a), loss, (logits, new_bs) = grad_fn(
                self._loss_fn(bs, key, state.step), params, alpha, batch, self.axis_name
            )
            is_arch = phase == 0
            new_alpha, new_a_opt = self._update_alpha(state, g_a, alpha, a_opt)
            w_updates, new_w_opt = self.w_tx.update(g_w, w_opt, params)
            new_params = optax.apply_updates(params, w_updates)

            def pick(when, a, b):
                return jax.tree.map(lambda x, y: jnp.where(when, x, y), a, b)

            carry = (
                pick(is_arch, params, new_params),
                new_bs,
                pick(is_arch, new_alpha, alpha),
                pick(is_arch, w_opt, new_w_opt),
                pick(is_arch, new_a_opt, a_opt),
            )
            out = (
                loss,
                accuracy(logits, batch["label"]),
                optax.global_norm(g_w),
                optax.global_norm(g_a),
            )
            return carry, out

        init = (state.params, state.batch_stats, state.alpha, state.w_opt_state, state.a_opt_state)
        new, (loss, acc, gn_w, gn_a) = jax.lax.scan(phase_fn, init, (jnp.arange(2), batches, keys))
        metrics = {
            "train_loss": loss[1],
            "train_acc": acc[1],
            "val_loss": loss[0],
            "val_acc": acc[0],
            "grad_norm_w": gn_w[1],
            "grad_norm_alpha": gn_a[0],
        }
        return self._finish(state, new, metrics, lr)

    def eval_step(self, state: SearchState, batch):
        """Loss and accuracy sums on a batch with running BN statistics (``model.eval()``).

        ``batch["weight"]`` (optional, 0 or 1 per example) masks out padding.
        """
        logits = self.model.apply(
            {"params": state.params, "batch_stats": state.batch_stats},
            batch["image"],
            self.eval_arch_fn(state.alpha),
            train=False,
        )
        labels = batch["label"]
        weight = batch.get("weight", jnp.ones(labels.shape, jnp.float32))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        out = {
            "loss_sum": jnp.sum(weight * losses),
            "correct": jnp.sum(weight * (jnp.argmax(logits, -1) == labels)),
            "count": jnp.sum(weight),
        }
        if self.axis_name is not None:
            out = jax.lax.psum(out, self.axis_name)
        return out
