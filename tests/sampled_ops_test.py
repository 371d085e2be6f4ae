"""benchmarks/sampled_ops.py forces GDAS's sample: with ``alpha`` forced to one op, every
edge of both cell types samples that op, whatever the key and the temperature."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import sampled_ops
from benchmarks.search_step import search_config


def test_forced_alpha_makes_every_edge_sample_the_op():
    strategy, config = search_config("gdas", 4, 3)
    searcher = strategy(config, num_classes=10, steps_per_epoch=10)
    alpha = searcher.init_alpha(jax.random.PRNGKey(0))
    sample = jax.jit(searcher.arch_fn)
    num_ops = alpha["normal"].shape[-1]
    for k in range(num_ops):
        forced = sampled_ops.force(alpha, k, 50.0)
        for i, step in enumerate((0, 5 * 10, 10**6)):  # tau_max, midway, tau_min
            arch = sample(forced, jax.random.PRNGKey(i), jnp.asarray(step))
            for cell in ("normal", "reduce"):
                np.testing.assert_array_equal(arch[cell]["index"], k)
                np.testing.assert_array_equal(np.argmax(arch[cell]["hard"], -1), k)
    # the initial alpha samples several ops (the forced rows differ from it)
    arch = sample(alpha, jax.random.PRNGKey(0), jnp.asarray(0))
    assert len(set(np.asarray(arch["normal"]["index"]).tolist())) > 1
