"""The two phases of a one-shot search step, fused (one ``lax.scan``) or one after the other.

Both functions compute :meth:`jnas.strategies.oneshot.OneShotSearch.step`'s phases in
either order: ``arch_phase`` is 0 for DARTS's order (alpha on the validation batch, then the
weights on the training batch with the new alpha) and 1 for GDAS's (the weights first, then
alpha with the new weights). With ``skip_arch`` (a traced bool, a warm-up) the architecture
phase only computes its validation loss and accuracy: no gradient, and alpha, its optimizer
and the batch statistics stay as they are.

:func:`fused_step` (first order) scans the two phases, so XLA compiles the network's forward
and backward pass once instead of twice (the price: the architecture phase also computes
weight gradients it discards). :func:`fused_fd_step` does the same for the paper's second
order (finite differences, DARTS's order): its five network evaluations are one scan.
:func:`two_phase_step` runs the phases one after the other, with any hypergradient
(``exact`` only there). All return the updated
``(params, batch_stats, alpha, w_opt_state, a_opt_state)`` and the phases' metrics; the
search's ``finish`` makes the next state of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jnas.strategies import bilevel, oneshot


def _pick(when, a, b):
    return jax.tree.map(lambda x, y: jnp.where(when, x, y), a, b)


def _metrics(loss, acc, gn_w, gn_a, w_phase, arch_phase):
    return {
        "train_loss": loss[w_phase],
        "train_acc": acc[w_phase],
        "val_loss": loss[arch_phase],
        "val_acc": acc[arch_phase],
        "grad_norm_w": gn_w[w_phase],
        "grad_norm_alpha": gn_a[arch_phase],
    }


def fused_step(search, state, batches: tuple, keys: tuple, *, arch_phase: int, skip_arch=None):
    """The two phases of a first-order step as a ``lax.scan`` of length 2.

    Args:
      search: the :class:`~jnas.strategies.oneshot.OneShotSearch`.
      state: the current state.
      batches: ``(first, second)`` batches, in phase order (the architecture phase's is the
        validation batch).
      keys: one PRNG key per phase, in phase order.
      arch_phase: which phase (0 or 1) updates alpha.
      skip_arch: a traced bool (skip the architecture phase), or None (never skip).

    Returns:
      ``((params, batch_stats, alpha, w_opt_state, a_opt_state), metrics)``.
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
        new_alpha, new_a_opt = search.update_alpha(state, g_a, alpha, a_opt)
        if skip_arch is not None:  # the skipped phase leaves alpha and Adam's moments alone
            new_alpha, new_a_opt = _pick(skip_arch, (alpha, a_opt), (new_alpha, new_a_opt))
        new_params, new_w_opt = search.update_weights(g_w, w_opt, params)
        carry = (
            _pick(is_arch, params, new_params),
            new_bs,
            _pick(is_arch, new_alpha, alpha),
            _pick(is_arch, w_opt, new_w_opt),
            _pick(is_arch, new_a_opt, a_opt),
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
    return new, _metrics(loss, acc, gn_w, gn_a, w_phase, arch_phase)


# The stages of a fused finite-difference step: where each evaluates the network.
_TRAIN_AT_W, _VAL_AT_W1, _TRAIN_AT_W_PLUS, _TRAIN_AT_W_MINUS, _TRAIN_AT_NEW_ALPHA = range(5)


def fused_fd_step(search, state, batches: tuple, keys: tuple, lr, *, skip_arch=None):
    """A finite-difference second-order step (DARTS Eq. 7-8, then the weight step) as one
    ``lax.scan`` of five stages, so that XLA compiles the network's forward and backward
    pass once instead of five times.

    Each stage takes the loss and its gradients with respect to both the weights and alpha
    at one point; the cheap updates between them are a ``lax.switch`` on the stage:

    0. the training batch at ``(w, alpha)``: the virtual step ``w' = w - xi * (g + wd w +
       mu buf)`` (:func:`jnas.strategies.bilevel.unrolled_weights`);
    1. the validation batch at ``(w', alpha)``: ``v = grad_w'``, ``eps = 0.01 / ||v||``
       (``bilevel.FD_EPSILON``) and
       ``grad_alpha L_val(w', alpha)``;
    2. and 3. the training batch at ``w + eps v`` and ``w - eps v``: the Hessian-vector
       product's central difference, the hypergradient and alpha's Adam step;
    4. the training batch at ``(w, new alpha)``: the weight step and its batch statistics.

    The same numbers as :func:`two_phase_step` (DARTS's order). The price: stages 2 and 3
    also compute weight gradients that they discard. With ``skip_arch`` true (a warm-up) the
    virtual step is zero, so stage 1 is the validation loss at ``w`` (what the two-phase
    step's forward-only phase reports), and alpha, Adam's moments and the reported alpha
    gradient norm stay as that step leaves them.

    Args and returns as :func:`two_phase_step` with ``arch_phase=0``.
    """
    val_batch, train_batch = batches
    k_arch, k_w = keys
    skip = jnp.asarray(False) if skip_arch is None else skip_arch
    xi = jnp.where(skip, 0.0, lr)
    buf = bilevel.momentum_buffer(state.w_opt_state)
    params, alpha = state.params, state.alpha
    if buf is None:
        buf = jax.tree.map(jnp.zeros_like, params)
    stacked = jax.tree.map(lambda t, v: jnp.stack([t, v, t, t, t]), train_batch, val_batch)
    stage_keys = jnp.stack([k_arch, k_arch, k_arch, k_arch, k_w])
    zeros_a = jax.tree.map(jnp.zeros_like, alpha)
    scalar = jnp.zeros((), jnp.float32)
    # carry: the point to evaluate next (weights, alpha), what the later stages need
    # (v = grad_w' L_val, eps, grad_alpha L_val, grad_alpha at w+), and the state's parts.
    init = dict(
        w_eval=params,
        a_eval=alpha,
        v=jax.tree.map(jnp.zeros_like, params),
        eps=scalar,
        g_val=zeros_a,
        g_plus=zeros_a,
        params=params,
        bs=state.batch_stats,
        alpha=alpha,
        w_opt=state.w_opt_state,
        a_opt=state.a_opt_state,
        gn_a=scalar,
    )

    def axpy(a, x, y):
        return jax.tree.map(lambda xx, yy: yy + a * xx, x, y)

    def stage_fn(c, xs):
        stage, batch, key = xs
        loss_fn = search._loss_fn(state.batch_stats, key, state.step)
        (g_w, g_a), loss, (logits, new_bs) = bilevel.weight_and_alpha_gradient(
            loss_fn, c["w_eval"], c["a_eval"], batch, search.axis_name
        )

        def virtual_step(c):
            step = jax.tree.map(
                lambda w, g, b: g + search.weight_decay * w + search.momentum * b,
                params,
                g_w,
                buf,
            )
            return dict(c, w_eval=axpy(-xi, step, params))

        def at_unrolled(c):
            eps = bilevel.FD_EPSILON / jnp.sqrt(bilevel.tree_dot(g_w, g_w))
            return dict(c, v=g_w, eps=eps, g_val=g_a, w_eval=axpy(eps, g_w, params))

        def at_plus(c):
            return dict(c, g_plus=g_a, w_eval=axpy(-c["eps"], c["v"], params))

        def at_minus(c):
            hvp = jax.tree.map(lambda p, m: (p - m) / (2 * c["eps"]), c["g_plus"], g_a)
            g = jax.tree.map(lambda gv, h: gv - xi * h, c["g_val"], hvp)
            new_alpha, new_a_opt = search.update_alpha(state, g, alpha, state.a_opt_state)
            if skip_arch is not None:
                new_alpha, new_a_opt = _pick(
                    skip_arch, (alpha, state.a_opt_state), (new_alpha, new_a_opt)
                )
            gn = jnp.where(skip, 0.0, optax.global_norm(g))
            return dict(
                c, alpha=new_alpha, a_opt=new_a_opt, gn_a=gn, w_eval=params, a_eval=new_alpha
            )

        def weight_step(c):
            new_params, new_w_opt = search.update_weights(g_w, state.w_opt_state, params)
            return dict(c, params=new_params, w_opt=new_w_opt, bs=new_bs)

        c = jax.lax.switch(stage, [virtual_step, at_unrolled, at_plus, at_minus, weight_step], c)
        acc = oneshot.accuracy(logits, batch["label"])
        return c, (loss, acc, optax.global_norm(g_w))

    c, (loss, acc, gn_w) = jax.lax.scan(stage_fn, init, (jnp.arange(5), stacked, stage_keys))
    new = (c["params"], c["bs"], c["alpha"], c["w_opt"], c["a_opt"])
    metrics = {
        "train_loss": loss[_TRAIN_AT_NEW_ALPHA],
        "train_acc": acc[_TRAIN_AT_NEW_ALPHA],
        "val_loss": loss[_VAL_AT_W1],
        "val_acc": acc[_VAL_AT_W1],
        "grad_norm_w": gn_w[_TRAIN_AT_NEW_ALPHA],
        "grad_norm_alpha": c["gn_a"],
    }
    return new, metrics


def weight_phase(search, state, params, batch_stats, alpha, w_opt_state, batch, key):
    """The weight phase: a gradient step of the weights on ``batch`` at ``alpha``.

    Returns:
      ``(params, batch_stats, w_opt_state, loss, accuracy, grad_norm_w)``.
    """
    g_w, loss, (logits, batch_stats) = bilevel.weight_gradient(
        search._loss_fn(batch_stats, key, state.step),
        params,
        alpha,
        batch,
        axis_name=search.axis_name,
    )
    params, w_opt_state = search.update_weights(g_w, w_opt_state, params)
    acc = oneshot.accuracy(logits, batch["label"])
    return params, batch_stats, w_opt_state, loss, acc, optax.global_norm(g_w)


def two_phase_step(
    search, state, batches: tuple, keys: tuple, lr, *, arch_phase: int, skip_arch=None
):
    """The two phases one after the other (any hypergradient in DARTS's order).

    Args and returns as :func:`fused_step`; ``lr`` is the virtual step size xi of the
    second-order hypergradients.
    """
    w_phase = 1 - arch_phase
    train_batch, val_batch = batches[w_phase], batches[arch_phase]
    k_w, k_arch = keys[w_phase], keys[arch_phase]
    method = search.hypergradient

    def arch_phase_fn(params, batch_stats, alpha, a_opt_state, *, forward_only):
        """``(batch_stats, alpha, a_opt_state, loss, accuracy, grad_norm_alpha)``."""
        loss_fn = search._loss_fn(batch_stats, k_arch, state.step)
        if forward_only:
            loss, (logits, _) = loss_fn(params, alpha, val_batch)
            g_norm = jnp.zeros((), loss.dtype)
        else:
            g_alpha, loss, (logits, new_bs) = bilevel.alpha_gradient(
                loss_fn,
                params,
                alpha,
                train_batch,
                val_batch,
                method=method,
                xi=lr,
                weight_decay=search.weight_decay,
                momentum_buffer=bilevel.momentum_buffer(state.w_opt_state),
                momentum=search.momentum,
                axis_name=search.axis_name,
            )
            alpha, a_opt_state = search.update_alpha(state, g_alpha, alpha, a_opt_state)
            # First order: the validation forward ran on the real weights, keep its BN stats.
            batch_stats = new_bs if method == "first" else batch_stats
            g_norm = optax.global_norm(g_alpha)
        acc = oneshot.accuracy(logits, val_batch["label"])
        return batch_stats, alpha, a_opt_state, loss, acc, g_norm

    def run(forward_only: bool):
        params, bs, alpha = state.params, state.batch_stats, state.alpha
        w_opt, a_opt = state.w_opt_state, state.a_opt_state
        if arch_phase == 0:
            bs, alpha, a_opt, v_loss, v_acc, gn_a = arch_phase_fn(
                params, bs, alpha, a_opt, forward_only=forward_only
            )
        params, bs, w_opt, t_loss, t_acc, gn_w = weight_phase(
            search, state, params, bs, alpha, w_opt, train_batch, k_w
        )
        if arch_phase == 1:
            bs, alpha, a_opt, v_loss, v_acc, gn_a = arch_phase_fn(
                params, bs, alpha, a_opt, forward_only=forward_only
            )
        metrics = {
            "train_loss": t_loss,
            "train_acc": t_acc,
            "val_loss": v_loss,
            "val_acc": v_acc,
            "grad_norm_w": gn_w,
            "grad_norm_alpha": gn_a,
        }
        return (params, bs, alpha, w_opt, a_opt), metrics

    if skip_arch is None:
        return run(False)
    return jax.lax.cond(skip_arch, lambda: run(True), lambda: run(False))
