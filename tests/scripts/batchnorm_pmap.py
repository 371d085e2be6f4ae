"""Batch norm under pmap on the host CPU devices == one device on the whole batch (run by
tests/ops/batchnorm_test.py with 8 devices)."""

import json

import jax
import jax.numpy as jnp

from jnas.ops.layers import batch_norm

bn = batch_norm(True, "batch")
x = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 4, 4, 5)) + 1.0
t = jax.random.normal(jax.random.PRNGKey(1), x.shape)
v = bn.init(jax.random.PRNGKey(0), x, use_running_average=False)
v = dict(v, params={"scale": jnp.linspace(0.5, 2.0, 5), "bias": jnp.arange(5.0)})


def loss(v, x, t):
    y, upd = bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * t), upd


def step(v, x, t):
    (lo, upd), g = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(v, x, t)
    return jax.lax.psum(lo, "batch"), upd, jax.lax.psum(g[0], "batch"), g[1]


n = jax.local_device_count()
sh = lambda a: a.reshape(n, -1, *a.shape[1:])
rep = jax.tree.map(lambda a: jnp.stack([a] * n), v)
lo, upd, gv, gx = jax.pmap(step, axis_name="batch")(rep, sh(x), sh(t))
bn1 = batch_norm(True, None)


def loss1(v, x, t):
    y, upd = bn1.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * t), upd


(l1, upd1), g1 = jax.value_and_grad(loss1, argnums=(0, 1), has_aux=True)(v, x, t)
err = lambda a, b: max(
    float(jnp.max(jnp.abs(p - q))) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b))
)
print(
    "RESULT"
    + json.dumps(
        dict(
            devices=n,
            loss=err(lo[0], l1),
            stats=err(jax.tree.map(lambda a: a[0], upd), upd1),
            grad_params=err(jax.tree.map(lambda a: a[0], gv), g1[0]),
            grad_x=err(gx.reshape(x.shape), g1[1]),
        )
    )
)
