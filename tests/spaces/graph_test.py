"""The graph space (jnas.spaces.graph): structure, text form, descriptor, limits, network,
pictures, and the named errors of a graph that is not a network."""

import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jnas.spaces import child
from jnas.spaces.base import SPACES, Fidelity, make_space
from jnas.spaces.discrete import ArchitectureError, ArchitectureSyntaxError, NonAsciiTextError
from jnas.spaces.graph import (
    DEFAULT_START,
    Graph,
    GraphCycleError,
    GraphDanglingError,
    GraphError,
    GraphHasNoVectorError,
    GraphLimitError,
    GraphShapeError,
    GraphSpace,
    Layer,
    UnknownLayerError,
    draw_graph,
    parse_graph,
)

TINY = "c0=conv3x4<-input; p0=maxpool<-c0; c1=conv3x4<-p0; g0=gpool<-c1; d0=dense4<-g0"

# A graph with an add skip (c0 -> a0 after c1, through a pool copy) and a concat skip
# (c1 -> k0 after c2); weighted main-chain layers: c0, c1, c2, d0.
SKIPS = (
    "c0=conv3x4<-input; p0=maxpool<-c0; c1=conv3x4<-p0; p1=maxpool<-c0; a0=add<-c1,p1; "
    "c2=conv5x6<-a0; k0=concat<-c2,c1; g0=gpool<-k0; d0=dense8<-g0"
)


def tiny_space(**options):
    return make_space(
        {
            "name": "graph",
            "start": TINY,
            "input_channels": 1,
            "num_classes": 3,
            "random_edits": 4,
            "max_layers": 16,
            **options,
        }
    )


def test_the_registry_finds_the_space_and_its_options_are_json():
    assert SPACES.get("graph") is GraphSpace
    space = make_space({"name": "graph", "max_layers": 12})
    assert make_space(json.loads(json.dumps(space.options()))) == space
    assert space.start_graph() == parse_graph(DEFAULT_START)
    with pytest.raises(ValueError, match="bogus"):
        make_space({"name": "graph", "bogus": 1})
    with pytest.raises(ValueError, match="max_layers"):
        make_space({"name": "graph", "max_layers": 0})
    with pytest.raises(GraphLimitError, match="start network"):  # 8 layers > 5
        make_space({"name": "graph", "max_layers": 5})


def test_the_space_has_no_decision_vector():
    space = tiny_space()
    for call in (lambda: space.spec, lambda: space.encode(space.start_graph())):
        with pytest.raises(GraphHasNoVectorError, match="morphisms"):
            call()
    with pytest.raises(NotImplementedError):
        space.decode(np.zeros(3, np.int32))


def test_descriptor_of_a_known_graph_by_hand():
    g = parse_graph(SKIPS)
    assert g.main_chain == ("input", "c0", "p0", "c1", "a0", "c2", "k0", "g0", "d0")
    d = g.descriptor()
    assert d.layers == (("conv", 4), ("conv", 4), ("conv", 6), ("dense", 8))
    # add: leaves after c0 (1 weighted layer before), joins after c1 (2 before);
    # concat: leaves after c1 (2), joins after c2 (3).
    assert d.skips == ((1, 2, "add"), (2, 3, "concat"))
    assert parse_graph(TINY).descriptor().skips == ()


def test_layers_in_any_order_give_the_same_graph_and_its_text():
    g = parse_graph(SKIPS)
    shuffled = "; ".join(reversed(SKIPS.split("; ")))
    assert parse_graph(shuffled) == g
    assert hash(parse_graph(shuffled)) == hash(g)
    assert parse_graph(g.to_text()) == g
    assert g.to_text().split("; ")[0] == "c0=conv3x4<-input"


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_text_round_trip_of_random_graphs(seed):
    space = tiny_space()
    g = space.random_graph(jax.random.key(seed))
    assert space.within_limits(g)
    assert space.parse(space.to_text(g)) == g
    assert space.random_graph(jax.random.key(seed)) == g  # the key decides


def test_num_params_counts_what_the_network_has():
    space = tiny_space()
    for seed in range(3):
        g = space.random_graph(jax.random.key(seed))
        net = space.network(g, num_classes=3)
        assert g.num_params(3, (8, 8, 1)) == child.count_params(net, (8, 8, 1))
    # by hand: conv 3*3*1*4 + bn 2*4; conv 3*3*4*4 + 8; dense 4*4 + 4; classifier 4*3 + 3
    assert parse_graph(TINY).num_params(3, (8, 8, 1)) == 36 + 8 + 144 + 8 + 20 + 15


def test_network_params_are_keyed_by_layer_name_and_width_fidelity_scales():
    space = tiny_space()
    g = parse_graph(SKIPS)
    shapes = jax.eval_shape(
        space.network(g, num_classes=3).init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, 8, 8, 1), np.float32),
    )
    assert set(shapes["params"]) == {"c0", "c1", "c2", "a0", "d0", "classifier"}
    assert shapes["params"]["c2"]["conv"]["kernel"].shape == (5, 5, 4, 6)
    assert shapes["params"]["a0"]["scale"].shape == (1, 4)
    assert shapes["params"]["classifier"]["kernel"].shape == (8, 3)
    assert set(shapes["batch_stats"]) == {"c0", "c1", "c2"}
    half = space.network(g, num_classes=3, fidelity=Fidelity(width=0.5)).graph
    assert [x.width for x in half.layers if x.kind == "conv"] == [2, 2, 3]


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("c0=conv3x4<-c1; c1=conv3x4<-c0; g0=gpool<-c1", GraphCycleError, "cycle"),
        ("c0=conv3x4<-input; g0=gpool<-c9; d0=dense4<-g0", GraphDanglingError, "c9"),
        ("c0=conv3x4<-input; c1=conv3x4<-c0; g0=gpool<-c0", GraphDanglingError, "never read"),
        ("c0=conv3x4<-input; c1=conv3x8<-c0; a=add<-c0,c1; g=gpool<-a", GraphShapeError, "channel"),
        ("c0=conv3x4<-input; p=maxpool<-c0; a=add<-c0,p; g=gpool<-a", GraphShapeError, "spatial"),
        ("c0=conv3x4<-input; d=dense4<-c0", GraphShapeError, "gpool"),
        ("c0=conv3x4<-input; p=maxpool<-c0", GraphShapeError, "vector"),
        ("c0=conv3x4<-input; a=add<-c0,input; g=gpool<-a", GraphShapeError, "image"),
        ("c0=conv3x4<-input; x=dropout<-c0; g=gpool<-x", UnknownLayerError, "dropout"),
        ("c0=conv2x4<-input; g=gpool<-c0", GraphError, "kernel"),
        ("c0=conv3x04<-input; g=gpool<-c0", ArchitectureSyntaxError, "leading zeros"),
        ("c0=conv3x4<-input; g=gpool<-c0; g=gpool<-c0", GraphError, "twice"),
        ("c0=conv3x\u0664<-input; g=gpool<-c0", NonAsciiTextError, "Unicode digit"),
        ("c0=conv3x4<-input;; g=gpool<-c0", ArchitectureSyntaxError, "layer 1"),
        ("input=conv3x4<-input; g=gpool<-input", GraphError, "reserved"),
        ("maxpool", ArchitectureSyntaxError, "name=op"),
    ],
)
def test_a_graph_that_is_not_a_network_raises_a_named_error(text, error, match):
    with pytest.raises(error, match=match):
        parse_graph(text)


def test_errors_of_graphs_built_in_code_and_of_the_size_limits():
    with pytest.raises(ArchitectureError):
        Graph((Layer("c0", "conv", "input", 4, 3),))  # inputs not a tuple
    with pytest.raises(GraphError, match="at least one"):
        Graph(())
    with pytest.raises(GraphLimitError, match="6 layers, over the limit max_layers = 5"):
        tiny_space(max_layers=5).parse(TINY + "; d1=dense4<-d0")
    with pytest.raises(GraphLimitError, match="max_params = 300"):
        tiny_space(max_params=300).parse(TINY.replace("dense4", "dense40"))
    with pytest.raises(ArchitectureError):
        tiny_space().network(np.zeros(3, np.int32), num_classes=3)


def test_pictures_are_written_with_every_layer(tmp_path):
    g = parse_graph(SKIPS)
    paths = draw_graph(g, str(tmp_path), backend="matplotlib")
    assert [p.rsplit(".", 1)[1] for p in paths] == ["dot", "png", "svg"]
    with open(paths[0]) as f:
        dot = f.read()
    with open(paths[2]) as f:
        svg = f.read()
    assert open(paths[1], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    for x in g.layers:
        assert f'"{x.name}" [label="{x.name}: {x.op_text()}"' in dot
        assert f"{x.name}: {x.op_text()}" in svg
    dashed = [line.split(" [")[0].strip() for line in dot.splitlines() if "style=dashed" in line]
    assert dashed == ['"c0" -> "p1"', '"p1" -> "a0"', '"c1" -> "k0"']  # the skip branches
