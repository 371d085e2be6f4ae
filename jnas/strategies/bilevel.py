"""The bilevel update shared by the gradient-based strategies (DARTS Sec. 2.3, Eq. 3-8).

    min_alpha  L_val(w*(alpha), alpha)   s.t.   w*(alpha) = argmin_w L_train(w, alpha)

DARTS approximates ``w*(alpha)`` by one training step, ``w' = w - xi * grad_w L_train(w,
alpha)`` (Eq. 6), and offers three gradients for alpha:

* ``first`` order (xi = 0): ``grad_alpha L_val(w, alpha)``.
* ``fd``: the paper's second order (Eq. 7-8), the Hessian-vector product replaced by a
  central finite difference::

      grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha)
                                          - grad_alpha L_train(w-, alpha)) / (2 eps)

  with ``w+- = w +- eps * grad_w' L_val(w', alpha)`` and ``eps = 0.01 / ||grad_w' L_val||``.
* ``exact``: our addition, the same unrolled objective differentiated by autodiff through
  the training step (reverse over reverse).

The unrolled step follows the DARTS code (``architect._compute_unrolled_model``): it also
adds the weight decay and the optimizer's momentum buffer, ``w' = w - xi * (g + wd * w + mu
* buf)``; both are constant in alpha, so the three gradients stay consistent.

Everything here is generic over ``loss_fn(w, alpha, batch) -> (loss, aux)``, so it is tested
on tiny problems against brute-force references, and is reused by every gradient-based
strategy. With ``axis_name`` set (inside ``pmap``), gradients are averaged over devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

LossFn = Callable[[Any, Any, Any], tuple[jax.Array, Any]]
HYPERGRADIENTS = ("first", "fd", "exact")
FD_EPSILON = 0.01  # eps = FD_EPSILON / ||grad_w' L_val|| (DARTS's architect.py)


def _pmean(tree, axis_name):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def tree_dot(a, b) -> jax.Array:
    """The inner product of two pytrees of the same structure."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def unrolled_weights(
    loss_fn: LossFn,
    w,
    alpha,
    batch,
    *,
    xi: jax.Array | float,
    weight_decay: float = 0.0,
    momentum_buffer=None,
    momentum: float = 0.0,
    axis_name: str | None = None,
):
    """One virtual SGD step on the training loss (DARTS Eq. 6, with decay and momentum)."""
    g, _ = jax.grad(loss_fn, has_aux=True)(w, alpha, batch)
    g = _pmean(g, axis_name)

    def step(w_, g_, b_):
        return w_ - xi * (g_ + weight_decay * w_ + momentum * b_)

    if momentum_buffer is None:
        momentum_buffer = jax.tree.map(jnp.zeros_like, w)
    return jax.tree.map(step, w, g, momentum_buffer)


def alpha_gradient(
    loss_fn: LossFn,
    w,
    alpha,
    train_batch,
    val_batch,
    *,
    method: str = "first",
    xi: jax.Array | float = 0.0,
    weight_decay: float = 0.0,
    momentum_buffer=None,
    momentum: float = 0.0,
    fd_epsilon: float = FD_EPSILON,
    axis_name: str | None = None,
):
    """The architecture gradient of the bilevel problem.

    Args:
      loss_fn: ``(w, alpha, batch) -> (loss, aux)``.
      w: the weights.
      alpha: the architecture parameters.
      train_batch: the batch for the (virtual) weight step.
      val_batch: the batch of the validation loss.
      method: ``"first"``, ``"fd"`` (DARTS 2nd order) or ``"exact"`` (autodiff 2nd order).
      xi: the virtual step size (DARTS uses the current weight learning rate).
      weight_decay: weight decay folded into the virtual step.
      momentum_buffer: the weight optimizer's momentum buffer (a pytree like ``w``) or None.
      momentum: its coefficient.
      fd_epsilon: the finite-difference scale, ``eps = fd_epsilon / ||v||`` (0.01 in DARTS).
      axis_name: pmap axis for gradient averaging, or None.

    Returns:
      ``(grad_alpha, val_loss, val_aux)``, the loss and aux of the validation forward pass
      (at ``w`` for first order, at the unrolled ``w'`` otherwise).
    """
    if method not in HYPERGRADIENTS:
        raise ValueError(f"unknown hypergradient method {method!r}; use one of {HYPERGRADIENTS}")
    val_grad = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    unroll = dict(
        xi=xi,
        weight_decay=weight_decay,
        momentum_buffer=momentum_buffer,
        momentum=momentum,
        axis_name=axis_name,
    )

    if method == "first":
        (loss, aux), g_alpha = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
            w, alpha, val_batch
        )
        return _pmean(g_alpha, axis_name), loss, aux

    if method == "exact":

        def unrolled_val(a):
            w1 = unrolled_weights(loss_fn, w, a, train_batch, **unroll)
            return loss_fn(w1, a, val_batch)

        (loss, aux), g_alpha = jax.value_and_grad(unrolled_val, has_aux=True)(alpha)
        return _pmean(g_alpha, axis_name), loss, aux

    # method == "fd": DARTS Eq. 7-8.
    w1 = unrolled_weights(loss_fn, w, alpha, train_batch, **unroll)
    (loss, aux), (g_w1, g_alpha) = val_grad(w1, alpha, val_batch)
    g_w1, g_alpha = _pmean((g_w1, g_alpha), axis_name)
    eps = fd_epsilon / jnp.sqrt(tree_dot(g_w1, g_w1))
    grad_a_train = jax.grad(loss_fn, argnums=1, has_aux=True)
    w_plus = jax.tree.map(lambda p, v: p + eps * v, w, g_w1)
    w_minus = jax.tree.map(lambda p, v: p - eps * v, w, g_w1)
    g_plus = _pmean(grad_a_train(w_plus, alpha, train_batch)[0], axis_name)
    g_minus = _pmean(grad_a_train(w_minus, alpha, train_batch)[0], axis_name)
    hvp = jax.tree.map(lambda p, m: (p - m) / (2 * eps), g_plus, g_minus)
    g = jax.tree.map(lambda ga, h: ga - xi * h, g_alpha, hvp)
    return g, loss, aux


def weight_gradient(loss_fn: LossFn, w, alpha, batch, *, axis_name: str | None = None):
    """``grad_w L_train(w, alpha)`` with its loss and aux, averaged over devices."""
    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(w, alpha, batch)
    return _pmean(g, axis_name), loss, aux


def weight_and_alpha_gradient(loss_fn: LossFn, w, alpha, batch, axis_name: str | None = None):
    """``(grad_w, grad_alpha)`` of one loss, with its loss and aux, averaged over devices."""
    (loss, aux), g = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(w, alpha, batch)
    return _pmean(g, axis_name), loss, aux


def momentum_buffer(opt_state) -> Any:
    """The SGD momentum buffer (optax ``TraceState.trace``) inside an optimizer state."""
    try:
        return optax.tree_utils.tree_get(opt_state, "trace")
    except KeyError:
        return None
