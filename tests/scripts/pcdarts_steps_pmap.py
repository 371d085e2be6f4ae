"""The PC-DARTS search step: fused == two-phase on one device == pmap on 8 host CPU devices
(run by tests/strategies/pcdarts_test.py; prints OK)."""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import sys

sys.path.insert(0, "tests/strategies")
import jax
import jax.numpy as jnp
import numpy as np

from jnas.runner import setup_jax

setup_jax()
from search_helpers import tiny_config

from jnas.strategies import pcdarts

# Step 0 is a warm-up step (architecture phase skipped), step 1 a full one.
overrides = {"model.C": 2, "pcdarts.k": 2, "search.arch_start_epoch": 1}
config = tiny_config("pcdarts_fashion_mnist", "/nonexistent", overrides)


def build(axis_name=None, fuse=True):
    config.search.fuse_phases = fuse
    return pcdarts.build(config, num_classes=10, steps_per_epoch=1, axis_name=axis_name)


rng = np.random.default_rng(0)


def batch():
    return {
        "image": jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
    }


batches = [(batch(), batch()) for _ in range(2)]
single = build()
state0 = jax.jit(single.init)(jax.random.PRNGKey(0), batches[0][0]["image"][:2])


def run(step_fn, state, put=lambda b: b, get=lambda s: s):
    out = []
    for tb, vb in batches:
        state, m = step_fn(state, put(tb), put(vb))
        out.append((get(state), get(m)))
    return out


fused = run(jax.jit(single.step), state0)
two = run(jax.jit(build(fuse=False).step), state0)
par = build(axis_name="batch")
rep = jax.tree.map(lambda x: jnp.broadcast_to(x, (8, *x.shape)), state0)
shard = lambda b: jax.tree.map(lambda x: x.reshape((8, 2) + x.shape[1:]), b)
first = lambda t: jax.tree.map(lambda x: x[0], t)
pm = run(jax.pmap(par.step, axis_name="batch"), rep, shard, first)

(s_warm, m_warm), (s_full, m_full) = fused
assert all(
    np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(s_warm.alpha), jax.tree.leaves(state0.alpha))
)
assert float(m_warm["grad_norm_alpha"]) == 0.0 and float(m_full["grad_norm_alpha"]) > 0
assert float(jnp.abs(s_full.alpha["ops"]["normal"] - state0.alpha["ops"]["normal"]).max()) > 0


def close(a, b, what):
    for (pa, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x),
            np.asarray(y),
            rtol=2e-4,
            atol=2e-5,
            err_msg=what + jax.tree_util.keystr(pa),
        )


for name, other in {"two-phase": two, "pmap": pm}.items():
    for k, ((s1, m1), (s, m)) in enumerate(zip(fused, other)):
        what = f"{name} step {k} "
        close(s1.params, s.params, what + "params")
        close(s1.batch_stats, s.batch_stats, what + "batch_stats")
        close(s1.alpha, s.alpha, what + "alpha")
        close(m1, m, what + "metrics")
print("OK")
