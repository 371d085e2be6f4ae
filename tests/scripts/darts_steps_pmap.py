"""The DARTS search step: fused == two-phase on one device == pmap on 8 host CPU devices
(run by tests/strategies/darts_test.py; prints OK)."""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax
import jax.numpy as jnp
import numpy as np

from jnas.runner import setup_jax

setup_jax()
from experiments.configs import darts_tiny
from jnas.strategies import darts

assert jax.local_device_count() == 8, jax.devices()
config = darts_tiny.get_config()
config.model.C = 2


def build(axis_name=None, fuse=True):
    config.search.fuse_phases = fuse
    return darts.build(config, num_classes=10, steps_per_epoch=10, axis_name=axis_name)


rng = np.random.default_rng(0)


def batch():
    return {
        "image": jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
    }


tb, vb = batch(), batch()
single = build()
state0 = jax.jit(single.init)(jax.random.PRNGKey(0), tb["image"][:2])

s1, m1 = jax.jit(single.step)(state0, tb, vb)
s2, m2 = jax.jit(build(fuse=False).step)(state0, tb, vb)

par = build(axis_name="batch")
rep = jax.tree.map(lambda x: jnp.broadcast_to(x, (8, *x.shape)), state0)
shard = lambda b: jax.tree.map(lambda x: x.reshape((8, 2) + x.shape[1:]), b)
s3, m3 = jax.pmap(par.step, axis_name="batch")(rep, shard(tb), shard(vb))
s3 = jax.tree.map(lambda x: x[0], s3)
m3 = jax.tree.map(lambda x: x[0], m3)


def close(a, b, what):
    for (pa, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x),
            np.asarray(y),
            rtol=2e-4,
            atol=2e-5,
            err_msg=what + jax.tree_util.keystr(pa),
        )


# alpha moved, and all three agree on params, batch stats, alpha and metrics
assert float(jnp.abs(s1.alpha["normal"] - state0.alpha["normal"]).max()) > 1e-6
for name, (s, m) in {"two-phase": (s2, m2), "pmap": (s3, m3)}.items():
    close(s1.params, s.params, name + " params")
    close(s1.batch_stats, s.batch_stats, name + " batch_stats")
    close(s1.alpha, s.alpha, name + " alpha")
    close(m1, m, name + " metrics")
print("OK")
