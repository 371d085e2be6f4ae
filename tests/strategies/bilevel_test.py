"""The three architecture gradients against brute-force references on a tiny problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.strategies import bilevel


def loss_fn(w, alpha, batch):
    """A small non-quadratic model whose weights and alpha interact (like a mixed op)."""
    x, y = batch
    mix = jax.nn.softmax(alpha["a"])  # 3 "ops"
    feats = jnp.stack([jnp.tanh(x @ w["w1"]), x @ w["w2"], jnp.sin(x @ w["w1"])], -1)
    h = feats @ mix
    pred = h @ w["v"]
    return jnp.mean((pred - y) ** 2) + 0.1 * jnp.sum(w["v"] ** 2) * mix[0], pred


def _problem(dtype):
    k = jax.random.split(jax.random.PRNGKey(0), 8)
    w = {
        "w1": jax.random.normal(k[0], (4, 5), dtype),
        "w2": jax.random.normal(k[1], (4, 5), dtype),
        "v": jax.random.normal(k[2], (5,), dtype),
    }
    alpha = {"a": jax.random.normal(k[3], (3,), dtype)}
    train = (jax.random.normal(k[4], (16, 4), dtype), jax.random.normal(k[5], (16,), dtype))
    val = (jax.random.normal(k[6], (16, 4), dtype), jax.random.normal(k[7], (16,), dtype))
    buf = jax.tree.map(lambda a: 0.3 * jnp.ones_like(a), w)
    return w, alpha, train, val, buf


HP = dict(xi=0.05, weight_decay=3e-4, momentum=0.9)


def _brute_force(w, alpha, train, val, buf, h=1e-5):
    """Central differences of alpha -> L_val(w'(alpha), alpha), in float64."""

    def unrolled_val(a):
        a_tree = {"a": a}
        g = jax.grad(lambda w_: loss_fn(w_, a_tree, train)[0])(w)
        w1 = jax.tree.map(
            lambda p, g_, b: p - HP["xi"] * (g_ + HP["weight_decay"] * p + HP["momentum"] * b),
            w,
            g,
            buf,
        )
        return loss_fn(w1, a_tree, val)[0]

    a = alpha["a"]
    grad = []
    for i in range(a.shape[0]):
        e = jnp.zeros_like(a).at[i].set(h)
        grad.append((unrolled_val(a + e) - unrolled_val(a - e)) / (2 * h))
    return np.asarray(grad)


def test_exact_hypergradient_matches_brute_force():
    with jax.enable_x64(True):
        w, alpha, train, val, buf = _problem(jnp.float64)
        g, _, _ = bilevel.alpha_gradient(
            loss_fn, w, alpha, train, val, method="exact", momentum_buffer=buf, **HP
        )
        ref = _brute_force(w, alpha, train, val, buf)
        np.testing.assert_allclose(g["a"], ref, rtol=1e-6, atol=1e-9)


def test_finite_difference_hypergradient_matches_exact():
    with jax.enable_x64(True):
        w, alpha, train, val, buf = _problem(jnp.float64)
        exact, _, _ = bilevel.alpha_gradient(
            loss_fn, w, alpha, train, val, method="exact", momentum_buffer=buf, **HP
        )
        fd, _, _ = bilevel.alpha_gradient(
            loss_fn, w, alpha, train, val, method="fd", momentum_buffer=buf, **HP
        )
        ref = _brute_force(w, alpha, train, val, buf)
        # The DARTS approximation: the unrolled val gradient is exact, the Hessian-vector
        # product is a central difference (error O(eps^2)).
        np.testing.assert_allclose(fd["a"], ref, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(fd["a"], exact["a"], rtol=1e-4, atol=1e-7)
        # ...and the second-order term matters here: first order is measurably different.
        first, _, _ = bilevel.alpha_gradient(loss_fn, w, alpha, train, val, method="first")
        assert np.max(np.abs(first["a"] - exact["a"])) > 1e-4


def test_first_order_is_val_gradient_at_w():
    w, alpha, train, val, _ = _problem(jnp.float32)
    g, loss, _ = bilevel.alpha_gradient(loss_fn, w, alpha, train, val, method="first")
    ref = jax.grad(lambda a: loss_fn(w, a, val)[0])(alpha)
    np.testing.assert_allclose(g["a"], ref["a"], rtol=1e-6)
    np.testing.assert_allclose(loss, loss_fn(w, alpha, val)[0], rtol=1e-6)


def test_xi_zero_reduces_second_order_to_first():
    w, alpha, train, val, _ = _problem(jnp.float32)
    first, _, _ = bilevel.alpha_gradient(loss_fn, w, alpha, train, val, method="first")
    for method in ("fd", "exact"):
        g, _, _ = bilevel.alpha_gradient(loss_fn, w, alpha, train, val, method=method, xi=0.0)
        np.testing.assert_allclose(g["a"], first["a"], rtol=1e-5, atol=1e-7)


def test_jit_and_unknown_method():
    w, alpha, train, val, _ = _problem(jnp.float32)
    f = jax.jit(
        lambda w, a: bilevel.alpha_gradient(loss_fn, w, a, train, val, method="fd", xi=0.01)[0]
    )
    assert f(w, alpha)["a"].shape == (3,)
    with pytest.raises(ValueError, match="unknown hypergradient method 'second'"):
        bilevel.alpha_gradient(loss_fn, w, alpha, train, val, method="second")


def test_momentum_buffer_found_in_optax_state():
    import optax

    tx = optax.chain(
        optax.clip_by_global_norm(5.0),
        optax.add_decayed_weights(1e-3),
        optax.sgd(0.1, momentum=0.9),
    )
    params = {"a": jnp.ones(3)}
    state = tx.init(params)
    _, state = tx.update({"a": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(bilevel.momentum_buffer(state)["a"], 1.001 * np.ones(3), rtol=1e-6)
