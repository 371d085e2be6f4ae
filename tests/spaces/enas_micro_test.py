"""Tests of the ENAS micro space (jnas.spaces.enas_micro): its decisions against the official
code's layout, the Genotype text, named errors, the retraining network of a found cell, the
pictures, and the shared-weight supergraph against the standalone network."""

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import discrete
from jnas.spaces.base import SPACES, make_space
from jnas.spaces.cells import abstract_variables, build_network
from jnas.spaces.discrete import (
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    UnknownChoiceError,
)
from jnas.spaces.enas_micro import ENAS_MICRO_OPS, EnasMicroSpace, unused_nodes
from jnas.spaces.genotype import Genotype
from jnas.spaces.published import PUBLISHED, get_genotype

# melodyguan/enas scripts/cifar10_micro_final.sh: the `--child_fixed_arc` of the final micro
# network, in the official layout (per node: x_id x_op y_id y_op; normal cell, then reduce).
OFFICIAL_FIXED_ARC = (
    "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
)
# Decoded by hand with the official op ids (0 sep 3x3, 1 sep 5x5, 2 avg pool, 3 max pool,
# 4 identity); the normal cell reads only its inputs (all five nodes concatenated), the
# reduction cell's node 2 reads node 1 (state 3).
OFFICIAL_FIXED_GENOTYPE = Genotype(
    normal=[
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_5x5", 0),
        ("skip_connect", 0),
        ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_5x5", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_5x5", 1),
        ("sep_conv_5x5", 3),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("max_pool_3x3", 0),
        ("sep_conv_5x5", 1),
    ],
    reduce_concat=[2, 4, 5, 6],
)


def _random_archs(space, n, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: discrete.sample_uniform(space.spec, k)))(keys))


def test_registered_and_the_decision_layout_is_the_official_controllers():
    space = make_space({"name": "enas_micro"})
    assert isinstance(space, EnasMicroSpace) and SPACES.get("enas_micro") is EnasMicroSpace
    assert space.is_shared_weight and space.num_nodes == 5
    assert ENAS_MICRO_OPS == (
        "sep_conv_3x3",
        "sep_conv_5x5",
        "avg_pool_3x3",
        "max_pool_3x3",
        "skip_connect",
    )
    spec = space.spec
    assert spec.length == 2 * 4 * 5
    assert spec.names[:5] == (
        "normal/node0/input_a",
        "normal/node0/op_a",
        "normal/node0/input_b",
        "normal/node0/op_b",
        "normal/node1/input_a",
    )
    assert spec.names[20] == "reduce/node0/input_a"
    # Node b reads one of b + 2 states; every op decision has the five ops.
    for b, t in itertools.product(range(5), ("normal", "reduce")):
        d = spec.decisions[spec.names.index(f"{t}/node{b}/input_b")]
        assert d.choices == tuple(range(b + 2))
        assert spec.decisions[spec.names.index(f"{t}/node{b}/op_a")].choices == ENAS_MICRO_OPS


def test_the_official_fixed_arc_decodes_to_its_cells():
    space = EnasMicroSpace()
    arc = np.array([int(t) for t in OFFICIAL_FIXED_ARC.split()], np.int32)
    assert space.decode(arc) == OFFICIAL_FIXED_GENOTYPE
    np.testing.assert_array_equal(space.encode(OFFICIAL_FIXED_GENOTYPE), arc)


def test_the_published_enas_cell_is_a_member_and_round_trips():
    space = EnasMicroSpace()
    g = PUBLISHED["ENAS"]
    arch = space.encode(g)
    assert space.decode(arch) == g
    text = space.to_text(arch)
    assert text == str(g)
    np.testing.assert_array_equal(space.parse(text), arch)
    # The published reduction cell concatenates its loose ends 2, 3, 6 (nodes 2, 3 are read).
    assert space.decode(arch).reduce_concat == (2, 3, 6)


def test_random_architectures_round_trip_and_concat_the_unused_nodes():
    space = EnasMicroSpace(num_nodes=4)
    for arch in _random_archs(space, 30):
        g = space.decode(arch)
        np.testing.assert_array_equal(space.encode(g), arch)
        np.testing.assert_array_equal(space.parse(space.to_text(arch)), arch)
        for t in ("normal", "reduce"):
            edges = getattr(g, t)
            assert len(edges) == 8 and all(0 <= i < k // 2 + 2 for k, (_, i) in enumerate(edges))
            # Brute force: a node is concatenated iff no edge reads it.
            read = [i for _, i in edges]
            expected = tuple(s for s in range(2, 6) if read.count(s) == 0)
            assert getattr(g, f"{t}_concat") == expected == unused_nodes(edges, 4)
            assert 5 in expected  # the last node is never read


def _replace(g, cell, k, edge=None, concat=None):
    edges = list(getattr(g, cell))
    if edge is not None:
        edges[k] = edge
    kw = {cell: edges}
    if concat is not None:
        kw[f"{cell}_concat"] = concat
    return Genotype(**{**g.__dict__, **kw})


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda g: _replace(g, "normal", 3, ("dil_conv_3x3", 0)), UnknownChoiceError, "dil_conv"),
        (lambda g: _replace(g, "reduce", 0, ("none", 0)), UnknownChoiceError, "'none'"),
        (
            lambda g: _replace(g, "normal", 1, ("skip_connect", 2)),
            ArchitectureRangeError,
            r"\[0, 1\]",
        ),
        (
            lambda g: _replace(g, "reduce", 9, ("skip_connect", 7)),
            ArchitectureRangeError,
            "input index 7",
        ),
        (
            lambda g: Genotype(g.normal[:8], [2, 3, 4, 5], g.reduce, g.reduce_concat),
            ArchitectureRangeError,
            "8 edges",
        ),
        (
            lambda g: _replace(g, "reduce", 0, concat=[2, 3, 4, 5, 6]),
            ArchitectureRangeError,
            r"\[2, 3, 6\]",
        ),
        (lambda g: _replace(g, "reduce", 0, concat=[6, 3, 2]), ArchitectureRangeError, "ascending"),
        (lambda g: str(g), ArchitectureTypeError, "Genotype"),
    ],
)
def test_genotypes_outside_the_space_raise_named_errors(change, error, message):
    space = EnasMicroSpace()
    bad = change(PUBLISHED["ENAS"])
    with pytest.raises(error, match=message):
        space.encode(bad)
    if isinstance(bad, Genotype):
        with pytest.raises(error, match=message):
            space.parse(str(bad))


def test_texts_outside_the_space_raise_named_errors():
    space = EnasMicroSpace()
    with pytest.raises(ArchitectureRangeError, match="4 nodes"):
        space.parse(str(PUBLISHED["DARTS_V2"]))  # a DARTS cell: 4 nodes, dilated convs
    with pytest.raises(UnknownChoiceError, match="conv_9x9"):
        space.parse(str(PUBLISHED["ENAS"]).replace("sep_conv_5x5", "conv_9x9", 1))
    with pytest.raises(ArchitectureSyntaxError):
        space.parse("Genotype(normal=[('sep_conv_3x3', 1)")
    with pytest.raises(ArchitectureRangeError, match="normal/node0/input_a"):
        space.decode(np.full(space.spec.length, 2, np.int32))  # node 0 cannot read state 2


def test_a_found_cell_retrains_as_experiments_train_builds_it():
    # A found cell whose cells concatenate 3 and 2 nodes, given as its text (what the
    # search writes and `experiments.train --config.genotype=<text>` reads).
    space = EnasMicroSpace()
    arch = space.encode(OFFICIAL_FIXED_GENOTYPE)
    arch[20 + 16] = 4  # reduce node 4, input a: node 2 (state 4); op 3 (max pool) kept
    g = get_genotype(space.to_text(arch))
    assert g == space.decode(arch) and g.reduce_concat == (2, 5, 6)
    from experiments.configs import eval_tiny
    from jnas.runner.train import build_trainer

    config = eval_tiny.get_config()
    trainer = build_trainer(config, g, num_classes=10, steps_per_epoch=1)
    variables = abstract_variables(trainer.model, (16, 16, 3))
    c_last = 4 * config.model.C  # two reductions
    assert variables["params"]["classifier"]["kernel"].shape == (3 * c_last, 10)
    # The space's own network: its C and layers, width scaled to an even channel count.
    from jnas.spaces.base import Fidelity

    net = space.network(arch, num_classes=10, fidelity=Fidelity(width=0.3))
    assert (net.C, net.layers, net.genotype) == (6, 8, g)
    # The same variables as the retraining network's, the logits alone as the output.
    net = EnasMicroSpace(C=4, layers=3).network(arch, num_classes=10)
    variables = abstract_variables(net, (16, 16, 3))
    retrain = build_network("cifar", g, C=4, layers=3, num_classes=10, auxiliary=False)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, abstract_variables(retrain, (16, 16, 3))
    )
    out = jax.eval_shape(lambda v: net.apply(v, jnp.zeros((2, 16, 16, 3))), variables)
    assert out.shape == (2, 10)


def test_pictures_of_a_decoded_cell(tmp_path):
    space = EnasMicroSpace()
    paths = space.write_pictures(space.encode(OFFICIAL_FIXED_GENOTYPE), str(tmp_path))
    assert [os.path.basename(p) for p in paths] == [
        "normal.png",
        "normal.svg",
        "reduce.png",
        "reduce.svg",
    ]
    assert all(os.path.getsize(p) > 0 for p in paths)
    dot = (tmp_path / "reduce.dot").read_text()
    into_output = sorted(line.split('"')[1] for line in dot.splitlines() if '-> "c_{k}"' in line)
    assert into_output == ["0", "2", "3", "4"]  # nodes 0, 2, 3, 4 = states 2, 4, 5, 6


# -- the supergraph -------------------------------------------------------------------------


TINY = EnasMicroSpace(num_nodes=3, C=4, layers=3, scan_cells=False)  # cells: normal, 2 reduce
IMAGES = jax.random.normal(jax.random.key(7), (4, 8, 8, 3))
# A child of the tiny space whose normal cell reads every node but the last, and whose
# reduction cell leaves two nodes unread.
G1 = Genotype(
    normal=[
        ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 2),
        ("avg_pool_3x3", 0),
        ("sep_conv_5x5", 1),
        ("skip_connect", 3),
    ],
    normal_concat=[4],
    reduce=[
        ("sep_conv_5x5", 0),
        ("skip_connect", 1),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 2),
    ],
    reduce_concat=[3, 4],
)


@pytest.fixture(scope="module")
def supergraph():
    """The tiny supergraph, its variables, and one jit-compiled step taking the
    architecture as a traced argument: train-mode logits (batch statistics, as the official
    search), the updated running averages, and the gradient of a loss with respect to the
    last cell's parameters (the backward pass stops there: a cheaper program)."""
    model = TINY.supergraph(num_classes=5)
    arch = jnp.zeros((TINY.spec.length,), jnp.int32)
    # A jit-compiled init (its ops do not run: only the variables' initializers) compiles
    # in about half the time of the un-jitted lazy_init here.
    init = jax.jit(lambda key: model.init(key, IMAGES, arch, train=True))
    variables = init(jax.random.key(0, impl="rbg"))
    traces = []

    def step(variables, images, arch):
        traces.append(1)  # runs once per trace
        params = dict(variables["params"])

        def loss(last):
            out, new = model.apply(
                {"params": {**params, "cell_2": last}, "batch_stats": variables["batch_stats"]},
                images,
                arch,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.sum(out**2), (out, new["batch_stats"])

        grads, (logits, stats) = jax.grad(loss, has_aux=True)(params["cell_2"])
        return logits, stats, grads

    return model, variables, jax.jit(step), traces


def test_a_child_of_the_shared_weights_equals_its_standalone_network(supergraph):
    _, variables, step, traces = supergraph
    archs = [_random_archs(TINY, 1, seed=1)[0], TINY.encode(G1)]
    concats = [(TINY.decode(a).normal_concat, TINY.decode(a).reduce_concat) for a in archs]
    assert concats[0] != concats[1] and concats[0][0] != concats[0][1]  # varied concats
    for a in archs:
        logits, stats, _ = step(variables, IMAGES, jnp.asarray(a))
        net = TINY.network(a, num_classes=5)
        net_vars = TINY.supergraph_variables_to_network(a, variables)
        shapes = jax.tree.map(lambda v: v.shape, abstract_variables(net, (8, 8, 3)))
        assert jax.tree.map(lambda v: v.shape, net_vars) == shapes  # every variable, no other
        # Train mode (batch statistics) on one batch: the same logits, and the running
        # averages the child updates are the child's rows of the supergraph's.
        ref, ref_stats = jax.jit(
            lambda v, x, n=net: n.apply(v, x, train=True, mutable=["batch_stats"])
        )(net_vars, IMAGES)
        np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
        assert float(jnp.std(ref)) > 1e-3  # not a trivially equal output
        mapped = TINY.supergraph_variables_to_network(
            a, {"params": variables["params"], "batch_stats": stats}
        )
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
            mapped["batch_stats"],
            ref_stats["batch_stats"],
        )
    # One trace and one compiled program for all the architectures.
    assert len(traces) == 1 and step._cache_size() == 1


@pytest.mark.slow
def test_a_child_equals_its_standalone_network_in_inference_mode(supergraph):
    model, variables, step, _ = supergraph
    # Running averages that are not the initial ones (one train-mode step's).
    _, stats, _ = step(variables, IMAGES, jnp.asarray(TINY.encode(G1)))
    variables = {"params": variables["params"], "batch_stats": stats}
    infer = jax.jit(lambda v, x, a: model.apply(v, x, a, train=False))
    for a in [*_random_archs(TINY, 2, seed=2), TINY.encode(G1)]:
        net = TINY.network(a, num_classes=5)
        net_vars = TINY.supergraph_variables_to_network(a, variables)
        ref = jax.jit(lambda v, x, n=net: n.apply(v, x))(net_vars, IMAGES)  # inference
        np.testing.assert_allclose(infer(variables, IMAGES, a), ref, rtol=1e-5, atol=1e-5)
    assert infer._cache_size() == 1


def _used_slices(arch, cell_type="reduce"):
    """(op, node, branch, input) of every op with parameters that the child ``arch`` runs
    in a cell of ``cell_type``: the slices ``params[op][node, branch, input]`` it uses."""
    out = set()
    for k, (op, i) in enumerate(getattr(TINY.decode(arch), cell_type)):
        stride2 = cell_type == "reduce" and i < 2
        if op.startswith("sep_conv") or (op == "skip_connect" and stride2):
            out.add((op, k // 2, k % 2, i))
    return out


def _nonzero_slices(grads):
    out = set()
    for name, tree in grads.items():
        if name.startswith("preprocess"):
            continue
        leaves = jax.tree.leaves(tree)
        norms = sum(np.abs(np.asarray(g)).sum(axis=tuple(range(3, g.ndim))) for g in leaves)
        out |= {(name, *map(int, idx)) for idx in zip(*np.nonzero(norms), strict=True)}
    return out


def test_architectures_sharing_an_op_update_the_same_parameters(supergraph):
    _, variables, step, traces = supergraph
    # g2 keeps g1's reduction node 0 (both branches) and changes the op of every other
    # reduction edge (the gradient is taken for the last cell, a reduction cell).
    other = {"sep_conv_3x3": "sep_conv_5x5", "skip_connect": "sep_conv_3x3"}
    reduce = list(G1.reduce[:2]) + [(other.get(op, "sep_conv_5x5"), i) for op, i in G1.reduce[2:]]
    g2 = Genotype(G1.normal, G1.normal_concat, reduce, unused_nodes(reduce, 3))
    slices = []
    for g in (G1, g2):
        _, _, grads = step(variables, IMAGES, jnp.asarray(TINY.encode(g)))
        used = _used_slices(TINY.encode(g))
        # Exactly the child's ops get a gradient: every other op, and row, gets zero.
        assert _nonzero_slices(grads) == used
        slices.append(used)
    # Shared: node 0's 5x5 conv on input 0 and skip connection (a factorized reduction) on
    # input 1, the same parameter rows for both children.
    assert slices[0] & slices[1] == {("sep_conv_5x5", 0, 0, 0), ("skip_connect", 0, 1, 1)}
    assert slices[0] != slices[1]
    assert len(traces) == 1
