"""A first-order search step whose two phases (architecture and weights) are one ``lax.scan``.

:meth:`OneShotSearch._fused_first_order_step` does this for DARTS's order (alpha on the
validation batch, then the weights). :func:`fused_step` generalises it for the variants:
either order (GDAS updates the weights first), and an architecture phase that can be
skipped at run time (a warm-up), in which case it only computes the validation loss.
XLA then compiles the network's forward and backward pass once instead of twice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jnas.strategies import bilevel, oneshot


def fused_step(
    search: oneshot.OneShotSearch,
    state: oneshot.SearchState,
    batches: tuple,
    keys: tuple,
    lr: jax.Array,
    *,
    arch_phase: int,
    skip_arch: jax.Array | None = None,
):
    """Run the two phases of a first-order step as a ``lax.scan`` of length 2.

    Args:
      search: the search (its model, optimizers, ``_loss_fn``).
      state: the current state.
      batches: ``(first, second)`` batches, in phase order.
      keys: one PRNG key per phase (the architecture sample, dropout).
      lr: the weight learning rate (logged).
      arch_phase: which phase (0 or 1) updates alpha; the other updates the weights with
        the alpha current at that point. Its batch is the validation batch.
      skip_arch: a traced bool; when true the architecture phase computes only its loss
        and accuracy (no gradient, alpha, its optimizer and the batch statistics unchanged).

    Returns:
      ``(state, metrics)`` as :meth:`OneShotSearch.step`.
    """
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), *batches)
    w_phase = 1 - arch_phase

    def phase_fn(carry, xs):
        params, bs, alpha, w_opt, a_opt = carry
        phase, batch, key = xs
        loss_fn = search._loss_fn(bs, key, state.step)

        def full(_):
            return bilevel.weight_and_alpha_gradient(
                loss_fn, params, alpha, batch, search.axis_name
            )

        def forward_only(_):
            loss, (logits, _) = loss_fn(params, alpha, batch)
            zeros = jax.tree.map(jnp.zeros_like, (params, alpha))
            return zeros, loss, (logits, bs)

        if skip_arch is None:
            (g_w, g_a), loss, (logits, new_bs) = full(None)
        else:
            run = (phase == w_phase) | jnp.logical_not(skip_arch)
            (g_w, g_a), loss, (logits, new_bs) = jax.lax.cond(run, full, forward_only, None)
        is_arch = phase == arch_phase
        new_alpha, new_a_opt = search._update_alpha(state, g_a, alpha, a_opt)
        if skip_arch is not None:  # the skipped phase leaves alpha and Adam's moments alone
            new_alpha, new_a_opt = jax.tree.map(
                lambda n, o: jnp.where(skip_arch, o, n), (new_alpha, new_a_opt), (alpha, a_opt)
            )
        w_updates, new_w_opt = search.w_tx.update(g_w, w_opt, params)
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
            oneshot.accuracy(logits, batch["label"]),
            optax.global_norm(g_w),
            optax.global_norm(g_a),
        )
        return carry, out

    init = (state.params, state.batch_stats, state.alpha, state.w_opt_state, state.a_opt_state)
    xs = (jnp.arange(2), stacked, jnp.stack(keys))
    new, (loss, acc, gn_w, gn_a) = jax.lax.scan(phase_fn, init, xs)
    metrics = {
        "train_loss": loss[w_phase],
        "train_acc": acc[w_phase],
        "val_loss": loss[arch_phase],
        "val_acc": acc[arch_phase],
        "grad_norm_w": gn_w[w_phase],
        "grad_norm_alpha": gn_a[arch_phase],
    }
    return search._finish(state, new, metrics, lr)
