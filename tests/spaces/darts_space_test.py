import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops.primitives import DARTS_PRIMITIVES, UnknownOpError
from jnas.spaces.darts import DartsSpace, SearchNetwork, reduction_layers


def test_edges_follow_darts_order():
    space = DartsSpace()
    assert space.num_edges == 14
    assert space.edges[:5] == ((0, 0), (1, 0), (0, 1), (1, 1), (2, 1))
    assert space.num_ops == 8
    alpha = space.init_alpha(jax.random.PRNGKey(0))
    assert alpha["normal"].shape == (14, 8) and alpha["reduce"].shape == (14, 8)
    assert float(jnp.abs(alpha["normal"]).max()) < 1e-2  # 1e-3 * N(0, 1)


def test_unknown_primitive():
    with pytest.raises(UnknownOpError, match="unknown op 'sep_conv_9x9'"):
        DartsSpace(primitives=("none", "sep_conv_9x9"))


def test_reduction_layers():
    assert reduction_layers(8) == (2, 5)
    assert reduction_layers(20) == (6, 13)
    assert reduction_layers(5) == (1, 3)


def _weights(rows_normal, rows_reduce=None):
    space = DartsSpace()
    w = np.full((14, 8), 0.1)
    for (e, k), v in rows_normal.items():
        w[e, k] = v
    r = np.full((14, 8), 0.1) if rows_reduce is None else rows_reduce
    return space, {"normal": w, "reduce": r}


def test_derive_genotype_by_hand():
    # Node 0 (edges 0, 1): edge 1 has sep_conv_3x3 (k=4) strongest.
    # Node 1 (edges 2..4): 'none' (k=0) is huge on edge 2 but ignored; edges 3 and 4 win.
    names = DARTS_PRIMITIVES
    space, w = _weights(
        {
            (1, 4): 0.9,
            (0, 1): 0.5,
            (2, 0): 0.99,
            (3, 7): 0.8,
            (4, 3): 0.7,
        }
    )
    g = space.derive_genotype(w)
    assert g.normal[0] == (names[4], 1)  # strongest edge first
    assert g.normal[1] == (names[1], 0)
    assert g.normal[2] == ("dil_conv_5x5", 1)
    assert g.normal[3] == ("skip_connect", 2)
    assert g.normal_concat == (2, 3, 4, 5)
    for k in range(0, 8, 2):
        assert g.normal[k][1] != g.normal[k + 1][1]  # two distinct inputs per node


def test_search_network_param_count_matches_darts():
    # The DARTS code logs "param size = 1.930618MB" for its CIFAR-10 search network.
    space = DartsSpace()
    net = SearchNetwork(C=16, num_classes=10, layers=8)
    w = jax.tree.map(lambda a: jax.nn.softmax(a, -1), space.init_alpha(jax.random.PRNGKey(0)))
    shapes = jax.eval_shape(
        lambda: net.init(jax.random.PRNGKey(1), jnp.zeros((2, 32, 32, 3)), w, train=True)
    )
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
    assert n == 1_930_618


@pytest.mark.parametrize("vmap_edges", [True, False])
def test_tiny_forward_shapes(vmap_edges):
    space = DartsSpace()
    net = SearchNetwork(C=4, num_classes=7, layers=3, vmap_edges=vmap_edges)
    w = jax.tree.map(lambda a: jax.nn.softmax(a, -1), space.init_alpha(jax.random.PRNGKey(0)))
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 3))
    out = jax.eval_shape(lambda: net.init_with_output(jax.random.PRNGKey(1), x, w, train=True)[0])
    assert out.shape == (2, 7)


def test_vmapped_edges_equal_looped_edges():
    """The vmapped edge groups compute exactly what one module per edge computes."""
    space = DartsSpace()
    w = jax.tree.map(lambda a: jax.nn.softmax(100 * a, -1), space.init_alpha(jax.random.PRNGKey(0)))
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 8, 8, 3))
    looped = SearchNetwork(C=4, num_classes=5, layers=3, vmap_edges=False)
    vmapped = SearchNetwork(C=4, num_classes=5, layers=3, vmap_edges=True)
    v_loop = looped.init(jax.random.PRNGKey(1), x, w)  # eager: jitted, ~2 min of compilation
    # Move each per-edge module's params into the stacked layout of the vmapped groups.
    v_vmap = jax.eval_shape(vmapped.init, jax.random.PRNGKey(1), x, w)

    def restack(loop_tree, vmap_tree):
        out = {}
        for name, sub in vmap_tree.items():
            if name.startswith("from_") and name in loop_tree:
                out[name] = loop_tree[name]
            elif name.startswith("from_"):
                parts = sorted(
                    (k for k in loop_tree if k.startswith(name + "_e")),
                    key=lambda k: int(k.split("_e")[-1]),
                )
                trees = [loop_tree[k] for k in parts]
                out[name] = jax.tree.map(lambda *a: jnp.stack(a), *trees)
            elif isinstance(sub, dict):
                out[name] = restack(loop_tree[name], sub)
            else:
                out[name] = loop_tree[name]
        return out

    v2 = {c: restack(v_loop[c], v_vmap[c]) for c in v_loop}
    # Jitted: one program each (eager, every op compiles on its own: minutes on a cold cache).
    y1, s1 = jax.jit(lambda v: looped.apply(v, x, w, mutable=["batch_stats"]))(v_loop)
    y2, s2 = jax.jit(lambda v: vmapped.apply(v, x, w, mutable=["batch_stats"]))(v2)
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
