"""The pools against XLA's ``reduce_window`` (PyTorch's semantics), values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jnas.ops import layers


def _window(x, init, op, k, stride, pad):
    return lax.reduce_window(
        x, init, op, (1, k, k, 1), (1, stride, stride, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0))
    )


CASES = [(3, 1, 1), (3, 2, 1), (2, 2, 0), (5, 3, 2)]


@pytest.mark.parametrize("k,stride,pad", CASES)
@pytest.mark.parametrize("hw", [(7, 9), pytest.param((8, 8), marks=pytest.mark.slow)])
def test_max_pool_matches_reduce_window(k, stride, pad, hw):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    ref = _window(x, -jnp.inf, lax.max, k, stride, pad)
    np.testing.assert_array_equal(layers.max_pool(x, k, stride, pad), ref)
    # Random normal inputs have no ties: the gradient routes to the window's argmax.
    g = jax.grad(lambda x: jnp.sum(jnp.sin(layers.max_pool(x, k, stride, pad))))(x)
    g_ref = jax.grad(lambda x: jnp.sum(jnp.sin(_window(x, -jnp.inf, lax.max, k, stride, pad))))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k,stride,pad", CASES)
@pytest.mark.parametrize("hw", [(7, 9), pytest.param((8, 8), marks=pytest.mark.slow)])
def test_avg_pool_excludes_padding_from_the_count(k, stride, pad, hw):
    x = jax.random.normal(jax.random.key(1), (2, *hw, 3))
    total = _window(x, 0.0, lax.add, k, stride, pad)
    count = _window(jnp.ones_like(x[:1, ..., :1]), 0.0, lax.add, k, stride, pad)
    np.testing.assert_allclose(
        layers.avg_pool(x, k, stride, pad), total / count, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        layers.avg_pool(x, k, stride, pad, count_include_pad=True),
        total / (k * k),
        rtol=1e-5,
        atol=1e-6,
    )
    # A corner window of the 3x3, padding-1 pool sees 4 pixels, not 9.
    if (k, stride, pad) == (3, 1, 1):
        y = layers.avg_pool(jnp.ones((1, *hw, 1)), 3, 1, 1)
        assert float(y[0, 0, 0, 0]) == pytest.approx(1.0)
    g = jax.grad(lambda x: jnp.sum(jnp.sin(layers.avg_pool(x, k, stride, pad))))(x)
    g_ref = jax.grad(lambda x: jnp.sum(jnp.sin(_window(x, 0.0, lax.add, k, stride, pad) / count)))(
        x
    )
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
