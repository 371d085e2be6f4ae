"""Network morphisms (jnas.spaces.morphism): each edit keeps the function the parent computes
(batch norm in inference mode) on random graphs at random edit points and on a hand-made
graph with every tricky case, the child then trains, and bad edits raise named errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jnas.spaces.base import make_space
from jnas.spaces.graph import GraphError, GraphLimitError, parse_graph
from jnas.spaces.morphism import (
    EDIT_KINDS,
    Edit,
    EditError,
    MissingLayerError,
    _apply,
    apply_edit,
    candidate_edits,
    edit_between,
    morph_variables,
    possible_edits,
)

TINY = "c0=conv3x4<-input; p0=maxpool<-c0; c1=conv3x4<-p0; g0=gpool<-c1; d0=dense4<-g0"
# c0 and c1 are tied by the add a0 (widening one widens both); c0 also reaches the
# existing concat k0 through an avgpool (its channels sit after c2's there).
TRICKY = (
    "c0=conv3x4<-input; c1=conv3x4<-c0; a0=add<-c1,c0; p0=maxpool<-a0; c2=conv1x4<-p0; "
    "p1=avgpool<-c0; k0=concat<-c2,p1; g0=gpool<-k0; d0=dense4<-g0"
)
NUM_CLASSES = 3


def tiny_space(**options):
    return make_space(
        {
            "name": "graph",
            "start": TINY,
            "input_channels": 1,
            "num_classes": NUM_CLASSES,
            "random_edits": 4,
            "max_layers": 18,
            **options,
        }
    )


def random_variables(space, graph, seed):
    """Variables of ``graph``'s network with every leaf random (no zero scale, no unit
    statistics, add scales of both signs), so that a morphism has something to keep."""
    shapes = jax.eval_shape(
        space.network(graph, num_classes=NUM_CLASSES).init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32),
    )
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return rng.uniform(0.5, 2.0, s.shape).astype(np.float32)
        if "'bn']['scale" in name:
            return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
        return (0.5 * rng.standard_normal(s.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def forward(space, graph, variables, x):
    return np.asarray(jax.jit(space.network(graph, num_classes=NUM_CLASSES).apply)(variables, x))


IMAGES = np.asarray(jax.random.normal(jax.random.key(1), (4, 8, 8, 1)))


def check_preserved(space, parent, variables, edit, key, y_parent):
    child = apply_edit(space, parent, edit)
    child_vars = morph_variables(space, parent, edit, variables, key)
    y_child = forward(space, child, child_vars, IMAGES)
    np.testing.assert_allclose(y_child, y_parent, rtol=1e-4, atol=1e-5, err_msg=str(edit))
    # the same variables from the child graph (the edit found by edit_between)
    again = morph_variables(space, parent, child, variables, key)
    assert jax.tree.all(jax.tree.map(np.array_equal, again, child_vars))
    return child, child_vars


def random_edits_preserve(seed):
    """One random graph; one random edit of each kind at a random point."""
    space = tiny_space()
    key = jax.random.key(seed)
    k_graph, k_vars, *k_edits = jax.random.split(key, 2 + 2 * len(EDIT_KINDS))
    parent = space.random_graph(k_graph)
    variables = random_variables(space, parent, seed)
    y_parent = forward(space, parent, variables, IMAGES)
    edits = possible_edits(space, parent)
    for k, kind in enumerate(EDIT_KINDS):
        of_kind = [e for e in edits if e.kind == kind]
        if not of_kind:
            continue
        edit = of_kind[int(jax.random.randint(k_edits[2 * k], (), 0, len(of_kind)))]
        check_preserved(space, parent, variables, edit, k_edits[2 * k + 1], y_parent)


def test_each_edit_preserves_the_function_on_a_random_graph():
    random_edits_preserve(0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 9))
def test_each_edit_preserves_the_function_on_more_random_graphs(seed):
    random_edits_preserve(seed)


# 11 s cold; the default suite checks each edit on random graphs, and the runner tests train
# morphed children
@pytest.mark.slow
def test_a_chain_of_tricky_edits_preserves_the_function_and_the_child_trains():
    space = tiny_space()
    graph = parse_graph(TRICKY)
    variables = random_variables(space, graph, 7)
    y = forward(space, graph, variables, IMAGES)
    chain = [
        Edit("wider", "c1", width=7),  # the add ties c0: both widen; k0's 2nd part moves
        Edit("skip_concat", "c0", "c2"),  # a new concat inside the existing one (k0)
        Edit("skip_add", "c0", "a0"),  # a second add, zero scale
        Edit("deeper", "a0", kernel=5),
        Edit("deeper", "g0"),  # a dense block
        Edit("wider", "d0", width=6),
    ]
    for k, edit in enumerate(chain):  # structure and variables on the host; one forward
        child = apply_edit(space, graph, edit)
        child_vars = morph_variables(space, graph, edit, variables, jax.random.key(k))
        again = morph_variables(space, graph, child, variables, jax.random.key(k))
        assert jax.tree.all(jax.tree.map(np.array_equal, again, child_vars))
        graph, variables = child, child_vars
    np.testing.assert_allclose(forward(space, graph, variables, IMAGES), y, rtol=1e-4, atol=1e-5)
    assert {x.name: x.width for x in graph.layers if x.kind == "conv"}["c0"] == 7
    assert graph.by_name["k0"].inputs == ("cat0", "p1")
    np.testing.assert_array_equal(variables["params"]["add0"]["scale"], 0.0)
    # by hand: weighted main-chain layers c0 c1 c3 c2 d1 d0; every skip leaves after c0 (1)
    # and joins a0 (after c1: 2), add0 (after c3: 3), cat0 and k0 (after c2: 4)
    assert graph.descriptor().skips == (
        (1, 2, "add"),
        (1, 3, "add"),
        (1, 4, "concat"),
        (1, 4, "concat"),
    )

    # The child trains: its training loss (inference mode, as fit_classifier normalises the
    # images) falls, and the zero-initialised skip parts receive gradient.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 8, 8, 1)).astype(np.uint8)
    labels = rng.integers(0, NUM_CLASSES, 32).astype(np.int32)
    pixels = images.reshape(-1, 1) / 255.0
    x = (images / 255.0 - pixels.mean(0)) / pixels.std(0)
    net = space.network(graph, num_classes=NUM_CLASSES)
    loss = jax.jit(
        lambda v: optax.softmax_cross_entropy_with_integer_labels(net.apply(v, x), labels).mean()
    )
    result = space.train_child(
        graph,
        (images, labels),
        (images, labels),
        config={"num_steps": 25, "batch_size": 32, "learning_rate": 0.05},
        key=jax.random.key(0),
        init_variables=variables,
        return_variables=True,
    )
    trained = result.variables
    assert float(loss(trained)) < 0.9 * float(loss(variables))
    assert np.abs(np.asarray(trained["params"]["add0"]["scale"])).max() > 0
    # d0 reads (through the identity dense d1) k0 = [c2 (4), the new branch of c0 (7),
    # p1 (7)]: the rows of the new channels started at zero and left it.
    np.testing.assert_array_equal(variables["params"]["d0"]["dense"]["kernel"][4:11], 0.0)
    rows = np.asarray(trained["params"]["d0"]["dense"]["kernel"])
    assert rows.shape == (18, 6)
    assert np.abs(rows[4:11]).max() > 0


def test_init_variables_of_another_graph_are_refused_by_name():
    space = tiny_space()
    graph = parse_graph(TINY)
    wider = apply_edit(space, graph, Edit("wider", "c0", width=8))
    variables = random_variables(space, graph, 0)
    data = (np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.int32))
    with pytest.raises(
        ValueError, match=r"init_variables\['\w+'\]\['c0'\].* the network wants \((8,|3, 3, 1, 8)\)"
    ):
        space.train_child(
            wider,
            data,
            data,
            config={"num_classes": 3},
            key=jax.random.key(0),
            init_variables=variables,
        )
    with pytest.raises(EditError, match="do not belong"):
        morph_variables(space, wider, Edit("deeper", "c0", kernel=1), variables, jax.random.key(0))


def test_possible_edits_of_a_small_graph_by_hand():
    space = tiny_space()
    graph = parse_graph(TINY)
    edits = possible_edits(space, graph)
    assert [str(e) for e in edits] == [
        *(f"deeper({n}, k{k})" for n in ("c0", "p0", "c1") for k in (1, 3, 5)),
        "deeper(g0)",
        "deeper(d0)",
        "wider(c0, 8)",
        "wider(c1, 8)",
        "wider(d0, 8)",
        # no skip c0 -> p0: no weighted layer between (a pooled copy of itself)
        "skip_add(c0 -> c1)",
        "skip_add(p0 -> c1)",
        "skip_concat(c0 -> c1)",
        "skip_concat(p0 -> c1)",
    ]
    assert possible_edits(space, graph) == edits  # deterministic
    for e in edits:
        child = apply_edit(space, graph, e)
        assert edit_between(graph, child) == e
        assert space.within_limits(child)
    # skip_add(c0 -> c1): the branch copies the pool between them
    child = apply_edit(space, graph, Edit("skip_add", "c0", "c1"))
    assert child.by_name["add0"].inputs == ("c1", "p1")
    assert child.by_name["p1"].inputs == ("c0",)
    assert child.by_name["g0"].inputs == ("add0",)
    # a tight parameter limit leaves out the edits that grow the network past it: by hand,
    # skip_add adds 4 parameters (a scale), skip_concat 16 (d0's rows), deeper 20 or more
    tight = tiny_space(max_params=space.num_params(graph) + 12)
    assert [str(e) for e in possible_edits(tight, graph)] == [
        "skip_add(c0 -> c1)",
        "skip_add(p0 -> c1)",
    ]


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (Edit("deeper", "c9", kernel=3), MissingLayerError, "no layer 'c9'"),
        (Edit("wider", "nope", width=8), MissingLayerError, "no layer 'nope'"),
        (Edit("skip_add", "c0", "c7"), MissingLayerError, "no layer 'c7'"),
        (Edit("skip_add", "c1", "c0"), EditError, "cycle"),
        (Edit("skip_add", "c0", "c2"), EditError, "equal channel counts"),
        (Edit("skip_concat", "c0", "c1"), EditError, "add downstream"),
        (Edit("skip_add", "c0", "g0"), EditError, "feature maps"),
        (Edit("wider", "c0", width=4), EditError, "above 4"),
        (Edit("wider", "a0", width=8), EditError, "only conv and dense"),
        (Edit("deeper", "c0", kernel=2), EditError, "kernel"),
        (Edit("deeper", "g0", kernel=3), EditError, "vector"),
        (Edit("deeper", "q0", kernel=1), EditError, "pools the image"),
        (Edit("wider", "d0", width=10**6), GraphLimitError, "max_params"),
    ],
)
def test_an_edit_that_does_not_apply_raises_a_named_error(edit, error, match):
    graph = parse_graph(
        "q0=maxpool<-input; c0=conv3x4<-q0; c1=conv3x4<-c0; a0=add<-c1,c0; c2=conv3x6<-a0; "
        "g0=gpool<-c2; d0=dense4<-g0"
    )
    with pytest.raises(error, match=match):
        apply_edit(tiny_space(), graph, edit)


def test_a_width_tied_through_a_concat_is_not_widened():
    # k0 = [c0, c1] is added to c2: widening c1 (or c0) would change k0's channels alone
    graph = parse_graph(
        "c0=conv3x4<-input; c1=conv3x4<-c0; k0=concat<-c0,c1; c2=conv3x8<-c0; "
        "a0=add<-k0,c2; g0=gpool<-a0; d0=dense4<-g0"
    )
    space = tiny_space()
    assert [e.at for e in possible_edits(space, graph) if e.kind == "wider"] == ["d0"]
    for at in ("c0", "c1", "c2"):
        with pytest.raises(EditError, match="ties"):
            apply_edit(space, graph, Edit("wider", at, width=16))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_every_candidate_edit_of_a_random_graph_gives_a_valid_graph(seed):
    space = tiny_space(random_edits=12, max_layers=40, max_params=10**7)
    graph = space.random_graph(jax.random.key(seed))
    for edit in candidate_edits(space, graph):
        child = _apply(graph, edit)  # a GraphError here is a bug of the edit
        assert edit_between(graph, child) == edit


def test_other_bad_edits_raise_named_errors():
    graph = parse_graph(TINY)
    with pytest.raises(EditError, match="unknown edit kind"):
        Edit("shallower", "c0")
    with pytest.raises(GraphLimitError, match="parent graph has 6 layers"):
        apply_edit(
            tiny_space(max_layers=5),
            parse_graph(TINY + "; d1=dense4<-d0"),
            Edit("deeper", "c0", kernel=1),
        )
    with pytest.raises(EditError, match="not one morphism"):
        edit_between(graph, parse_graph(TRICKY))
    assert issubclass(MissingLayerError, GraphError) and issubclass(MissingLayerError, KeyError)
