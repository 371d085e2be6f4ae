import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.ops.primitives import DARTS_PRIMITIVES, UnknownOpError
from jnas.spaces.darts import DartsSpace, SearchNetwork, reduction_layers
from jnas.spaces.discrete import ArchitectureError
from jnas.spaces.genotype import Genotype, MalformedGenotypeError


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
    g = space.derive(w)
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


@pytest.mark.slow
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


# ------------------------------------------------------------------ derivation vs the rule


def _rule(alpha_rows, n_nodes, ops, candidates=None, edge_logits=None, digits=60):
    """The DARTS rule written plainly: per node, the two incoming edges whose strongest
        allowed non-'none' op weighs most (ties: lower edge), each with that op (ties: lower op
        index). Weights are softmax(alpha) computed with 500 digits (mpmath: enough for a
    weight within exp(-1000) of 1; PC-DARTS: times the
        softmax of beta over the node's edges), compared by their logarithms rounded to float64:
        two weights that differ by less than float64 resolves (both within 1e-308 of 1, say)
        tie, as they do in any float code."""
    import mpmath

    mpmath.mp.dps = digits

    def softmax(row):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        total = mpmath.fsum(e)
        return [x / total for x in e]

    w = [softmax(r) for r in alpha_rows]
    gene, start = [], 0
    for j in range(n_nodes):
        n_in = j + 2
        if edge_logits is not None:
            b = softmax(edge_logits[start : start + n_in])
            for i in range(n_in):
                w[start + i] = [x * b[i] for x in w[start + i]]

        def allowed(i, s=start):
            return [
                k
                for k in range(len(ops))
                if ops[k] != "none" and (candidates is None or candidates[s + i][k])
            ]

        strength = {i: max(w[start + i][k] for k in allowed(i)) for i in range(n_in)}
        strength = {i: float(mpmath.log(v)) for i, v in strength.items()}
        edges = sorted(range(n_in), key=lambda i: -strength[i])[:2]  # stable
        for i in edges:
            best = allowed(i)[0]
            for k in allowed(i):
                if float(mpmath.log(w[start + i][k])) > float(mpmath.log(w[start + i][best])):
                    best = k
            gene.append((ops[best], i))
        start += n_in
    return tuple(gene)


def _alphas(kind, rng, shape):
    if kind == "random":
        return rng.normal(size=shape) * rng.choice([1e-3, 1.0, 10.0])
    if kind == "tied":  # small integers: many exact ties within and across edges
        return rng.integers(-1, 2, size=shape).astype(float)
    if kind == "permuted":  # every edge a permutation of one row: their maxima tie exactly
        row = rng.normal(size=shape[-1])
        return np.stack([rng.permutation(row) for _ in range(shape[0])])
    # extreme: one op leads its edge by 80 to 1000 (float32 softmax rounds the rest to 0)
    a = rng.normal(size=shape)
    a[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] += rng.uniform(80, 1000, shape[0])
    return a


@pytest.mark.parametrize("kind", ["random", "tied", "permuted", "extreme"])
def test_derive_matches_the_rule_in_exact_arithmetic(kind):
    from jnas.spaces.darts import log_softmax64

    space = DartsSpace()
    rng = np.random.default_rng({"random": 0, "tied": 1, "permuted": 2, "extreme": 3}[kind])
    digits, rounds = (500, 8) if kind == "extreme" else (60, 20)
    for _ in range(rounds):
        alpha = {t: _alphas(kind, rng, (14, 8)) for t in ("normal", "reduce")}
        g = space.derive(log_softmax64(alpha))
        for t in ("normal", "reduce"):
            assert getattr(g, t) == _rule(alpha[t], 4, DARTS_PRIMITIVES, digits=digits), (kind, t)


def test_a_lead_of_a_hundred_is_not_lost_to_float32_rounding():
    """Node 1's three edges each have one op far ahead: float32 softmax makes all three
    weigh exactly 1.0 (the choice would fall to edge order); the strongest two must win."""
    from jnas.spaces.darts import log_softmax64

    a = np.zeros((14, 8))
    a[2, 4], a[3, 5], a[4, 6] = 100.0, 120.0, 110.0
    assert (
        np.asarray(jax.nn.softmax(jnp.asarray(a[2:5], jnp.float32), -1)).max(-1).tolist()
        == [1.0] * 3
    )
    g = DartsSpace().derive(log_softmax64({"normal": a, "reduce": a}))
    assert g.normal[2:4] == (("sep_conv_5x5", 1), ("dil_conv_3x3", 2))


def test_derive_picks_only_among_an_edges_candidates():
    from jnas.spaces.darts import log_softmax64

    space = DartsSpace()
    w = log_softmax64({t: np.zeros((14, 8)) for t in ("normal", "reduce")})
    cand = {t: np.zeros((14, 8), bool) for t in ("normal", "reduce")}
    for t in cand:
        cand[t][:, [0, 6]] = True  # none and dil_conv_3x3 only
    w["normal"][:, 6] = -np.inf  # the candidates tie at -inf
    g = space.derive(w, candidates=cand)
    assert {op for op, _ in g.normal + g.reduce} == {"dil_conv_3x3"}


# ------------------------------------------------------------------ the space protocol


def test_darts_space_is_registered_and_built_from_a_config_section():
    from jnas.spaces.base import OneShotSpace, make_space

    space = make_space(
        {"name": "darts", "C": 8, "layers": 5, "primitives": ["none", "skip_connect"]}
    )
    assert isinstance(space, OneShotSpace) and space.is_one_shot
    assert space.primitives == ("none", "skip_connect") and space.C == 8
    assert space.options()["name"] == "darts"


def test_encoding_round_trips_published_genotypes():
    from jnas.spaces.published import PUBLISHED

    space = DartsSpace()
    spec = space.spec
    assert spec.length == 2 * 4 * 2 * 2  # cells x nodes x edges x (input, op)
    assert spec.decisions[0].name == "normal/node0/in0" and spec.decisions[0].choices == (0, 1)
    assert "none" not in spec.decisions[1].choices
    n = 0
    for genotype in PUBLISHED.values():
        try:
            vector = space.encode(genotype)
        except MalformedGenotypeError:
            continue  # ops outside the DARTS candidates, or another concat
        n += 1
        assert vector.dtype == np.int32 and vector.shape == (spec.length,)
        assert space.decode(vector) == genotype
        assert space.to_text(vector) == str(genotype)
        assert space.parse(str(genotype)).tolist() == vector.tolist()
    assert n >= 2


@pytest.mark.parametrize(
    "text, match",
    [("Genotype(normal=[", "not valid syntax"), ("nonsense", "must look like")],
)
def test_parse_raises_the_named_errors(text, match):
    with pytest.raises(MalformedGenotypeError, match=match):
        DartsSpace().parse(text)


def test_parse_rejects_ops_outside_the_space():
    from jnas.spaces.edges import FRC_REDUCE_CELL
    from jnas.spaces.published import PUBLISHED

    g = PUBLISHED["DARTS_V2"]
    frc = Genotype(g.normal, g.normal_concat, FRC_REDUCE_CELL, g.reduce_concat)
    with pytest.raises(MalformedGenotypeError, match="not a candidate"):
        DartsSpace().parse(str(frc))
    with pytest.raises(UnknownOpError):
        DartsSpace().parse(str(g).replace("sep_conv_3x3", "sep_conv_9x9", 1))
    with pytest.raises(ArchitectureError):
        DartsSpace().decode(np.full(32, 99))


def test_network_width_follows_the_fidelity():
    from jnas.spaces.base import Fidelity
    from jnas.spaces.published import PUBLISHED

    space = DartsSpace(eval_C=16, eval_layers=8)
    vector = space.encode(PUBLISHED["DARTS_V2"])
    assert space.network(vector, num_classes=10).C == 16
    half = space.network(vector, num_classes=10, fidelity=Fidelity(width=0.5))
    assert half.C == 8 and half.layers == 8 and half.genotype == PUBLISHED["DARTS_V2"]
    net = space.supernet(num_classes=7, C=4)
    assert isinstance(net, SearchNetwork) and (net.C, net.layers, net.num_classes) == (4, 8, 7)


def test_random_vectors_round_trip_and_bad_ones_are_named():
    from jnas.spaces import discrete
    from jnas.spaces.base import make_space

    space = make_space({"name": "darts", "n_nodes": 3, "primitives": DARTS_PRIMITIVES[:5]})
    assert make_space(json.loads(json.dumps(space.options()))) == space
    keys = jax.random.split(jax.random.key(0), 25)
    archs = np.asarray(jax.vmap(lambda k: discrete.sample_uniform(space.spec, k))(keys))
    for a in archs:
        np.testing.assert_array_equal(space.parse(space.to_text(a)), a)
        np.testing.assert_array_equal(space.encode(space.decode(a)), a)
    assert space.network(archs[0], num_classes=3) == space.network(
        space.decode(archs[0]), num_classes=3
    )
    with pytest.raises(ArchitectureError):
        space.parse(None)
    with pytest.raises(ArchitectureError, match="shape"):
        space.to_text(np.zeros(space.spec.length + 1, np.int32))
    bad = np.zeros(space.spec.length, np.int32)
    bad[0] = 2  # node 0 has inputs 0 and 1 only
    with pytest.raises(ArchitectureError, match="normal/node0/in0"):
        space.network(bad, num_classes=2)


# ------------------------------------------------------------------ the supernet's wiring


def _skip_cell_reference(s0, s1, w, n_nodes=4):
    """A skip-only normal cell by hand: node j = sum_i w[edge(i, j)] * state_i over every
    earlier state (the two inputs, after their 1x1 preprocessing, and nodes < j)."""
    states, e = [s0, s1], 0
    for j in range(n_nodes):
        node = 0.0
        for i in range(j + 2):
            node = node + w[e, 0] * states[i]
            e += 1
        states.append(node)
    return jnp.concatenate(states[2:], axis=-1)


@pytest.mark.parametrize("mode", ["looped", "vmapped", "scanned"])
def test_every_edge_feeds_its_node(mode):
    """Node j sums one edge from every earlier state, each weighted by its own row: a
    skip-only cell against the DAG written by hand (an edge whose output never reached its
    node, e.g. state j+1 -> node j, would show here and as a zero alpha gradient)."""
    from jnas.spaces.darts import SearchCell, _relu_conv_bn

    s0 = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
    s1 = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 3))
    w = jnp.arange(1.0, 15.0)[:, None] / 7.0
    cell = SearchCell(
        3,
        False,
        False,
        ("skip_connect",),
        vmap_edges=mode == "vmapped",
        scan_edges=mode == "scanned",
    )
    v = cell.init(jax.random.PRNGKey(2), s0, s1, w, False)

    def pre(name, s):
        sub = {c: v[c][name] for c in v}
        return _relu_conv_bn(3, None, name).apply(sub, s, False)

    want = _skip_cell_reference(pre("pre0", s0), pre("pre1", s1), w)
    np.testing.assert_allclose(cell.apply(v, s0, s1, w, False), want, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda w: jnp.sum(cell.apply(v, s0, s1, w, False) ** 2))(w)
    assert np.all(np.abs(np.asarray(grad)) > 0), grad


def _restack_edges(loop_cell, edges, reduction):
    """A looped cell's per-edge variables (``from_<i>_e<k>``) in the scanned layout (one
    stacked tree per loop: ``edges``, or ``edges_s2`` and ``edges_s1``)."""
    if reduction:
        loops = {
            "edges_s2": [k for k, (i, _) in enumerate(edges) if i < 2],
            "edges_s1": [k for k, (i, _) in enumerate(edges) if i >= 2],
        }
    else:
        loops = {"edges": list(range(len(edges)))}
    out = {k: v for k, v in loop_cell.items() if not k.startswith("from_")}
    for name, ids in loops.items():
        trees = [loop_cell[f"from_{edges[k][0]}_e{k}"] for k in ids]
        out[name] = jax.tree.map(lambda *a: jnp.stack(a), *trees)
    return out


# The reduction cell runs both loops (stride 2 from the inputs, stride 1 from the nodes);
# the normal cell's one loop is the same module, so it runs under -m slow (about 20 s).
@pytest.mark.parametrize("reduction", [pytest.param(False, marks=pytest.mark.slow), True])
def test_scanned_edges_equal_looped_edges(reduction):
    """``scan_edges``: the cell's edges as loops over a buffer of states compute what one
    module per edge computes, forward (train mode) and gradients of weights and alpha. Four
    of the ops (each kind: none, a pool, skip or factorized reduction, a separable conv),
    to keep the looped cell's compilation short."""
    from jnas.spaces.darts import SearchCell

    space = DartsSpace()
    prims = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
    s0 = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    s1 = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 4))
    w = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(3), (14, len(prims))), -1)
    looped = SearchCell(4, reduction, False, prims, vmap_edges=False)
    scanned = SearchCell(4, reduction, False, prims, vmap_edges=False, scan_edges=True)
    v1 = looped.init(jax.random.PRNGKey(4), s0, s1, w, True)
    v2 = {c: _restack_edges(v1[c], space.edges, reduction) for c in v1}

    def grads(cell, v):
        def loss(params, w):
            y, stats = cell.apply({**v, "params": params}, s0, s1, w, True, mutable=["batch_stats"])
            return jnp.sum(jnp.sin(y)), (y, stats["batch_stats"])

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(v["params"], w)

    (gp1, gw1), (y1, bs1) = grads(looped, v1)
    (gp2, gw2), (y2, bs2) = grads(scanned, v2)
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw1, gw2, rtol=1e-4, atol=1e-5)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5)
    jax.tree.map(close, _restack_edges(gp1, space.edges, reduction), gp2)
    jax.tree.map(close, _restack_edges(bs1, space.edges, reduction), bs2)
