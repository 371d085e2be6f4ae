"""Bayesian optimisation over morphisms (jnas.strategies.morphism_bo): the Auto-Keras edit
distance against hand computations and the one-pair reference, Bourgain's kernel, the GP
against a brute-force numpy GP, the tree-structured acquisition search and the baselines."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from jnas.spaces import morphism
from jnas.spaces.graph import GraphSpace
from jnas.strategies import morphism_bo as mb
from jnas.strategies.base import STRATEGIES, kind_of


@dataclasses.dataclass(frozen=True)
class D:  # a descriptor (the functions read only layers and skips)
    layers: tuple
    skips: tuple = ()


def _random_descriptors(n, seed, max_skips=4):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        convs = int(rng.integers(1, 9))
        layers = [("conv", int(rng.choice([4, 8, 16, 32]))) for _ in range(convs)]
        layers += [("dense", int(rng.choice([16, 64]))) for _ in range(int(rng.integers(0, 3)))]
        skips = set()
        for _ in range(int(rng.integers(0, max_skips + 1))):
            u = int(rng.integers(0, 6))
            skips.add((u, u + int(rng.integers(1, 5)), str(rng.choice(["add", "concat"]))))
        out.append(D(tuple(layers), tuple(sorted(skips))))
    return out


def test_distance_by_hand():
    x = D((("conv", 16), ("conv", 32), ("dense", 10)), ((0, 2, "add"),))
    y = D((("conv", 16), ("conv", 64), ("dense", 10)), ((1, 2, "add"), (0, 1, "concat")))
    # layers: conv32 -> conv64 costs |32 - 64| / 64 = 0.5 (cheaper than delete + insert);
    # skips: (0,2,add) ~ (1,2,add): (|0-1| + |2-1|) / (max(0,1) + max(2,1)) = 2/3, the concat
    # connection is unmatched (+1): 5/3.
    assert mb.layers_distance(x.layers, y.layers) == pytest.approx(0.5)
    assert mb.skips_distance(x.skips, y.skips) == pytest.approx(5 / 3)
    assert mb.edit_distance(x, y) == pytest.approx(0.5 + 5 / 3)
    assert mb.edit_distance(x, y, kernel_lambda=0.5) == pytest.approx(0.5 + 5 / 6)
    # an insertion costs 1; a substitution across kinds costs 1, not delete + insert (2)
    assert mb.layers_distance([("conv", 8)], [("conv", 8), ("conv", 8)]) == 1.0
    assert mb.layers_distance([("conv", 16)], [("dense", 16)]) == 1.0
    assert mb.layers_distance([], [("conv", 1), ("dense", 2)]) == 2.0
    assert mb.distance_matrix([x], [y])[0, 0] == pytest.approx(0.5 + 5 / 3)


def test_distance_matrix_is_the_reference_and_a_semimetric(monkeypatch):
    # Up to 12 skip connections: the subset programme (k <= 4) and scipy's assignment (k > 4).
    xs = _random_descriptors(30, 0, max_skips=12) + _random_descriptors(2, 0, max_skips=12)
    assert max(len(x.skips) for x in xs) > mb._MAX_SUBSET_DP
    got = mb.distance_matrix(xs, kernel_lambda=0.7)
    want = np.array([[mb.edit_distance(a, b, 0.7) for b in xs] for a in xs])
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_array_equal(got, got.T)
    assert np.all(np.diag(got) == 0) and got[0, 30] == 0 and got[1, 31] == 0  # copies
    assert np.all(got[~np.eye(len(xs), dtype=bool) & (want > 0)] > 0)
    # The XLA path of the layer programme (many pairs) gives the same, in float32.
    monkeypatch.setattr(mb, "_NUMPY_PAIRS", 0)
    monkeypatch.setattr(mb, "_CHUNK", 256)
    ys = xs[:12]
    np.testing.assert_allclose(mb.distance_matrix(xs, ys, 0.7), want[:, :12], atol=1e-5)


def test_bourgain_anchors_and_positive_definite_kernel():
    xs = list({x: None for x in _random_descriptors(40, 1)})
    n = len(xs)
    anchors = mb.bourgain_anchors(n, jax.random.key(0))
    levels, reps = math.ceil(math.log2(n) - 1) + 1, math.ceil(math.log(n))
    assert [len(s) for s in anchors] == [2**i for i in range(levels) for _ in range(reps)]
    dist = mb.distance_matrix(xs)
    e = mb.bourgain_embed(dist, anchors)
    # each coordinate is 1-Lipschitz in d: the embedded distance never exceeds d
    diff = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1) / e.shape[1])
    assert np.all(diff <= dist + 1e-12)
    k = mb.bourgain_kernel(e, e)
    distinct = np.unique(e, axis=0).shape[0] == n
    assert distinct and np.linalg.eigvalsh(k).min() > 1e-10
    np.testing.assert_allclose(np.diag(k), 1.0)


def _numpy_gp(e_train, y, e_test, noise):
    mu, sd = y.mean(), y.std()
    k = mb.bourgain_kernel(e_train, e_train) + noise * np.eye(len(y))
    ks = mb.bourgain_kernel(e_test, e_train)
    mean = ks @ np.linalg.solve(k, (y - mu) / sd)
    var = 1.0 - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T))
    return mean * sd + mu, np.sqrt(np.maximum(var, 0)) * sd


def test_gp_is_the_brute_force_gp():
    xs = list({x: None for x in _random_descriptors(24, 2)})
    train, test = xs[:13], xs[13:]
    y = np.random.default_rng(0).uniform(0.5, 0.9, len(train))
    gp = mb.EditDistanceGP(train, y, jax.random.key(3), noise=1e-6)
    mean, std = gp.predict(train)
    np.testing.assert_allclose(mean, y, atol=1e-4)  # through the data, small noise
    assert np.all(std < 1e-2)
    mean, std = gp.predict(test)
    want_mean, want_std = _numpy_gp(gp.embedding, y, gp.embed(test), 1e-6)
    np.testing.assert_allclose(mean, want_mean, atol=1e-8)
    np.testing.assert_allclose(std, want_std, atol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        mb.EditDistanceGP(train, np.where(np.arange(len(train)) == 2, np.nan, y), jax.random.key(0))


@pytest.fixture(scope="module")
def space_and_trained():
    space = GraphSpace(
        start="c0=conv3x4<-input; p0=maxpool<-c0; g0=gpool<-p0; d0=dense8<-g0",
        max_layers=8,
        max_params=5_000,
        input_channels=1,
    )
    graphs = [space.start_graph()]
    for edit in (morphism.Edit("wider", "c0", width=8), morphism.Edit("deeper", "c0", kernel=3)):
        graphs.append(morphism.apply_edit(space, graphs[0], edit))
    trained = [mb.Trained(i, g, a) for i, (g, a) in enumerate(zip(graphs, (0.30, 0.42, 0.35)))]
    return space, trained


def test_acquisition_search_returns_the_best_reachable_child(space_and_trained):
    space, trained = space_and_trained
    strategy = mb.MorphismBO(t_min=1e-2, n_neighbours=4)
    gp = strategy.fit(trained, jax.random.key(0))
    trace = []
    best = mb.acquisition_search(
        space, gp, trained, jax.random.key(1), beta=strategy.beta, t_min=1e-2,
        n_neighbours=4, trace=trace, seen={t.graph.to_text() for t in trained},
    )  # fmt: skip
    # reachable: the edits lead from the trained parent to the child, within the limits
    graph = trained[best.parent].graph
    for edit in best.edits:
        assert edit in morphism.possible_edits(space, graph)
        graph = morphism.apply_edit(space, graph, edit)
    assert graph == best.graph and best.graph.to_text() not in {t.graph.to_text() for t in trained}
    # the best UCB of every candidate valued, at least its parent's, and the GP's
    mean, std = gp.predict([best.graph.descriptor()])
    assert best.info["acq"] == pytest.approx(float(mean[0] + strategy.beta * std[0]))
    assert best.info["acq"] == max(p.info["acq"] for p in trace)
    pm, ps = gp.predict([trained[best.parent].graph.descriptor()])
    assert best.info["acq"] >= pm[0] + strategy.beta * ps[0]
    # the annealing: T = 0.9^k > 1e-2 allows 44 pops at most
    assert best.info["pops"] <= math.ceil(math.log(1e-2) / math.log(0.9))
    assert len({p.graph.to_text() for p in trace}) == len(trace) == best.info["scored"]
    # the same key, the same proposal; two children of one round are distinct
    again = strategy.propose(space, trained, 2, jax.random.key(5))
    assert [p.graph for p in again] == [p.graph for p in strategy.propose(
        space, trained, 2, jax.random.key(5))]  # fmt: skip
    assert len({p.graph for p in again}) == 2


def test_baselines(space_and_trained):
    space, trained = space_and_trained
    walk = mb.MorphismWalk().propose(space, trained, 3, jax.random.key(0))
    assert len(walk) == 3 and len({p.graph for p in walk}) == 3
    for p in walk:
        assert len(p.edits) == 1
        assert morphism.apply_edit(space, trained[p.parent].graph, p.edits[0]) == p.graph
    rand = mb.GraphRandom().propose(space, trained, 2, jax.random.key(0))
    assert [p.parent for p in rand] == [None, None] and all(
        space.within_limits(p.graph) for p in rand
    )
    assert {p.graph for p in rand}.isdisjoint(t.graph for t in trained)
    assert not mb.GraphRandom.inherits and mb.MorphismWalk.inherits


def test_registry_and_options():
    for name in ("morphism_bo", "morphism_walk", "graph_random"):
        assert kind_of(name) == "morphism" and STRATEGIES.get(name).KIND == "morphism"
    assert mb.MorphismBO.from_config({"beta": 1.0}).beta == 1.0
    problems = mb.MorphismBO.option_problems({"beta": -1.0, "t_min": 2.0, "bogus": 1})
    assert [k for k, _ in problems] == ["bogus", "beta", "t_min"]
    with pytest.raises(ValueError, match="n_neighbours"):
        mb.MorphismBO(n_neighbours=0)
    with pytest.raises(ValueError, match="not a morphism one"):
        mb.morphism_strategy("random")
