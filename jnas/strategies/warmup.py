"""A one-shot search whose architecture step is skipped, not just masked, during a warm-up.

PC-DARTS (``if epoch >= 15: architect.step(...)``) and P-DARTS (``train_arch=False`` for
the first 10 epochs of each stage) train only the weights at first. :class:`OneShotSearch`
masks the alpha update before ``arch_start_step`` but still computes its gradient;
:class:`WarmupSearch` skips it at run time with ``lax.cond``: a warm-up step costs one
weight step plus a forward pass on the validation batch (for the logged
``val_loss``/``val_acc``), and the validation batch does not touch the batch-norm
statistics, as in both official codes. After the warm-up the step computes exactly what
:meth:`OneShotSearch.step` does.

In the default fused first-order step (:func:`jnas.strategies.phases.fused_step`) the cond
sits inside the scanned phase, so the network's forward and backward pass is still compiled
once (plus one forward pass).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import optax

from jnas.strategies import bilevel, oneshot, phases


@dataclasses.dataclass(frozen=True)
class WarmupSearch(oneshot.OneShotSearch):
    """:class:`OneShotSearch` that skips the architecture step before ``arch_start_step``."""

    def step(self, state: oneshot.SearchState, train_batch, val_batch):
        search_step = functools.partial(oneshot.OneShotSearch.step, self)
        if self.arch_start_step <= 0:
            return search_step(state, train_batch, val_batch)
        warming_up = state.step < self.arch_start_step
        if self.hypergradient == "first" and self.fuse_phases:
            key = jax.random.fold_in(state.key, state.step)
            k_arch, k_w = jax.random.split(key)  # the keys OneShotSearch.step uses
            return phases.fused_step(
                self,
                state,
                (val_batch, train_batch),
                (k_arch, k_w),
                self.lr_fn(state.step),
                arch_phase=0,
                skip_arch=warming_up,
            )
        return jax.lax.cond(
            warming_up,
            self.weights_step,
            search_step,
            state,
            train_batch,
            val_batch,
        )

    def weights_step(self, state: oneshot.SearchState, train_batch, val_batch):
        """A warm-up step (second order or unfused): weights only, alpha unchanged."""
        key = jax.random.fold_in(state.key, state.step)
        k_arch, k_w = jax.random.split(key)  # the keys OneShotSearch.step would use
        lr = self.lr_fn(state.step)
        val_loss, (val_logits, _) = self._loss_fn(state.batch_stats, k_arch, state.step)(
            state.params, state.alpha, val_batch
        )
        g_w, train_loss, (train_logits, batch_stats) = bilevel.weight_gradient(
            self._loss_fn(state.batch_stats, k_w, state.step),
            state.params,
            state.alpha,
            train_batch,
            axis_name=self.axis_name,
        )
        w_updates, w_opt_state = self.w_tx.update(g_w, state.w_opt_state, state.params)
        params = optax.apply_updates(state.params, w_updates)
        metrics = {
            "train_loss": train_loss,
            "train_acc": oneshot.accuracy(train_logits, train_batch["label"]),
            "val_loss": val_loss,
            "val_acc": oneshot.accuracy(val_logits, val_batch["label"]),
            "lr": lr,
            "grad_norm_w": optax.global_norm(g_w),
            "grad_norm_alpha": jax.numpy.zeros_like(optax.global_norm(g_w)),
        }
        if self.axis_name is not None:
            metrics = jax.lax.pmean(metrics, self.axis_name)
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, w_opt_state=w_opt_state
        )
        return new_state, metrics
