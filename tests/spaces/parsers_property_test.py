"""Property tests of the architecture parsers (hypothesis, a fixed derandomized profile).

1. Any text either parses to a valid architecture whose printed form (``to_text``) parses
   back to an equal one, or raises a named ``ArchitectureError`` (a ``JnasError``) with a
   short message: never another exception. The texts are random Unicode and, mostly, valid
   texts with a few edits drawn from the tokens each form is made of (digits, Unicode
   digits, separators, literals of the wrong type, field names, ...).
2. Every valid architecture of a space (drawn from its decisions) prints to a text that
   parses back to it; every valid genotype (any number of nodes, any registered op, any
   concat) prints to a text that parses back to an equal genotype.

The settings are derandomized with no example database, so every run (CI's included) tries
the same examples; the file runs in a few seconds.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jnas.errors import JnasError
from jnas.ops.primitives import known_ops
from jnas.spaces import nb201
from jnas.spaces.darts import DartsSpace
from jnas.spaces.discrete import ArchitectureError
from jnas.spaces.genotype import Genotype, load_genotype
from jnas.spaces.nasrl import NasRLSpace
from jnas.spaces.published import PUBLISHED, get_genotype

FIXED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DARTS = DartsSpace()
NASRL = {
    "nasrl": NasRLSpace(num_layers=3),
    "nasrl_stride": NasRLSpace(num_layers=3, predict_stride=True),
    "nasrl_chain": NasRLSpace(num_layers=3, skip_connections=False),
}


class Parser:
    """A parser, the printer of what it returns, and equality of two results."""

    def __init__(self, parse, to_text, equal, seeds, tokens):
        self.parse, self.to_text, self.equal = parse, to_text, equal
        self.seeds, self.tokens = seeds, tokens


COMMON = ["0", "1", "2", "3", "9", "00", "01", "-1", "+", "-", " ", "\n", "\t", "\x00"]
UNICODE = ["\u0663", "\uff10", "\uff12", "\u00b2", "\u2003", "\u00e9", "\uff27"]
GENOTYPE_TOKENS = COMMON + UNICODE + [
    "1.5", "True", "'1'", "0x1", "1_0", "(", ")", "[", "]", "{", "}", ",", ", ", "'", ":",
    "normal=", "normal_concat=", "reduce=", "reduce_concat=", "range(2, 6)", "range(",
    "'2345'", "Genotype(", "sep_conv_3x3", "none", "conv_9x9", "*", "**", "#", "=", "x",
    r"\x5f", "u'", '"', "'''",
    "('skip_connect', 1), ",
]  # fmt: skip
NB201_TOKENS = COMMON + UNICODE + [
    "|", "~", "+", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3",
    "conv", "|none~0|",
]  # fmt: skip
NASRL_TOKENS = COMMON + UNICODE + [
    "x", "/s", "/f", "<-", ",", ";", "; ", "5", "7", "24", "36", "48", "64", "3x3/s1/f24",
]  # fmt: skip

PUBLISHED_TEXTS = [str(g) for g in PUBLISHED.values()]
NB201_TEXTS = [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|",
]


def _nasrl_texts(space):
    rng = np.random.default_rng(0)
    return [space.to_text(rng.integers(0, space.spec.num_choices)) for _ in range(3)]


def _array_equal(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


PARSERS = {
    "genotype": Parser(Genotype.parse, str, lambda a, b: a == b, PUBLISHED_TEXTS, GENOTYPE_TOKENS),
    "load_genotype": Parser(
        lambda t: load_genotype(t, PUBLISHED), str, lambda a, b: a == b,
        PUBLISHED_TEXTS, GENOTYPE_TOKENS,
    ),
    "darts": Parser(
        DARTS.parse, DARTS.to_text, _array_equal,
        [str(PUBLISHED[n]) for n in ("DARTS_V1", "DARTS_V2", "PC_DARTS", "P_DARTS")],
        GENOTYPE_TOKENS,
    ),
    "nb201": Parser(nb201.parse, nb201.to_text, _array_equal, NB201_TEXTS, NB201_TOKENS),
    **{
        name: Parser(space.parse, space.to_text, _array_equal, _nasrl_texts(space), NASRL_TOKENS)
        for name, space in NASRL.items()
    },
}  # fmt: skip


@st.composite
def edited(draw, parser: Parser):
    """A valid text of ``parser`` with 1-4 edits: a token inserted, a span deleted or
    replaced by a token."""
    text = draw(st.sampled_from(parser.seeds))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 6)))
        token = draw(st.sampled_from(parser.tokens))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            text = text[:i] + token + text[i:]
        elif kind == "delete":
            text = text[:i] + text[j:]
        else:
            text = text[:i] + token + text[j:]
    return text


def texts(parser: Parser):
    return st.one_of(
        edited(parser),
        edited(parser),
        edited(parser),
        st.text(max_size=80),
        st.lists(st.sampled_from(parser.tokens), max_size=30).map("".join),
    )


def check_parses_or_named_error(parser: Parser, text: str):
    try:
        result = parser.parse(text)
    except ArchitectureError as e:  # every other exception fails the test
        assert isinstance(e, JnasError)
        assert len(str(e)) < 2_000
        return False
    printed = parser.to_text(result)
    assert printed.isascii()
    assert parser.equal(parser.parse(printed), result)
    return True


def _property(name):
    parser = PARSERS[name]

    @FIXED
    @given(texts(parser))
    def run(text):
        check_parses_or_named_error(parser, text)

    return run


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_any_text_parses_and_round_trips_or_raises_a_named_error(name):
    _property(name)()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_the_unedited_seeds_parse(name):
    # The seeds are valid: the edited texts start from architectures, not from noise.
    parser = PARSERS[name]
    assert all(check_parses_or_named_error(parser, t) for t in parser.seeds)


# -- every valid architecture round-trips -------------------------------------------------


def vectors(spec):
    return st.tuples(*(st.integers(0, n - 1) for n in spec.num_choices)).map(
        lambda t: np.asarray(t, np.int32)
    )


@pytest.mark.parametrize(
    "space", [nb201.SPACE, DARTS, *NASRL.values()], ids=["nb201", "darts", *NASRL]
)
def test_every_vector_of_a_space_round_trips_through_its_text(space):
    @FIXED
    @given(vectors(space.spec))
    def run(arch):
        text = space.to_text(arch)
        assert np.array_equal(space.parse(text), arch), text
        assert np.array_equal(space.parse("\n " + text + " \n"), arch)

    run()


OPS = [op for op in known_ops()]


@st.composite
def genotypes(draw):
    """A valid genotype of any size: 1-6 nodes of two edges each, ops from the registry,
    a concat of distinct states in any order."""
    cells = {}
    for cell in ("normal", "reduce"):
        n_nodes = draw(st.integers(1, 6))
        edges = [
            (draw(st.sampled_from(OPS)), draw(st.integers(0, node + 1)))
            for node in range(n_nodes)
            for _ in range(2)
        ]
        concat = draw(st.lists(st.integers(0, n_nodes + 1), min_size=1, unique=True))
        cells[cell], cells[f"{cell}_concat"] = edges, concat
    return Genotype(**cells)


def test_every_genotype_round_trips_through_its_text():
    @FIXED
    @given(genotypes())
    def run(g):
        g.validate()
        text = str(g)
        assert Genotype.parse(text) == g
        assert load_genotype(text) == g and get_genotype(" " + text + "\n") == g
        assert Genotype(**g.to_dict()) == g

    run()
