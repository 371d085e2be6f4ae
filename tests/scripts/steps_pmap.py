"""A gradient strategy's search step, from one state: fused == two-phase on one device == pmap
on 8 host CPU devices (params, batch stats, alpha and metrics), over the method's steps.

  python tests/scripts/steps_pmap.py METHOD     # darts | gdas | pcdarts

Run by the slow tests of tests/strategies/{darts,gdas,pcdarts}_test.py; prints RESULT and a
JSON line. PC-DARTS's first step is a warm-up step (architecture phase skipped, alpha
unchanged), its second a full one. GDAS takes one step: its second updates alpha entries
whose gradient is near zero, where Adam's normalised step turns float noise between the
three programs into differences of the step's size.
"""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import json
import sys

sys.path.insert(0, "tests/strategies")
import jax
import jax.numpy as jnp
import numpy as np

from jnas.runner import setup_jax

setup_jax()
from search_helpers import tiny_config

from jnas.strategies.oneshot import gradient_strategy

# method -> (config module, overrides, steps)
CONFIGS = {
    "darts": ("darts_tiny", {"model.C": 2}, 2),
    "gdas": ("gdas_fashion_mnist", {"model.C": 2}, 1),
    "pcdarts": (
        "pcdarts_fashion_mnist",
        {"model.C": 2, "pcdarts.k": 2, "search.arch_start_epoch": 1},
        2,
    ),
}
method = sys.argv[1]
assert jax.local_device_count() == 8, jax.devices()
name, overrides, num_steps = CONFIGS[method]
config = tiny_config(name, "/nonexistent", overrides)
strategy = gradient_strategy(method)


def build(axis_name=None, fuse=True):
    config.search.fuse_phases = fuse
    return strategy(config, num_classes=10, steps_per_epoch=1, axis_name=axis_name)


rng = np.random.default_rng(0)


def batch():
    return {
        "image": jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
    }


batches = [(batch(), batch()) for _ in range(num_steps)]
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


def moved(a, b) -> float:
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


if config.search.arch_start_epoch:  # a warm-up step, then a full one
    (s_0, m_0), (_, m_1) = fused
    assert moved(s_0.alpha, state0.alpha) == 0.0
    assert float(m_0["grad_norm_alpha"]) == 0.0 and float(m_1["grad_norm_alpha"]) > 0
assert moved(fused[-1][0].alpha, state0.alpha) > 1e-6


def close(a, b, what):
    for (pa, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x),
            np.asarray(y),
            rtol=2e-4,
            atol=2e-5,
            err_msg=what + jax.tree_util.keystr(pa),
        )


for other_name, other in {"two-phase": two, "pmap": pm}.items():
    for k, ((s1, m1), (s, m)) in enumerate(zip(fused, other)):
        what = f"{other_name} step {k} "
        close(s1.params, s.params, what + "params")
        close(s1.batch_stats, s.batch_stats, what + "batch_stats")
        close(s1.alpha, s.alpha, what + "alpha")
        close(m1, m, what + "metrics")
print("RESULT", json.dumps({"method": method, "steps": len(fused)}))
