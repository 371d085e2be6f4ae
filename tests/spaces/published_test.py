"""The built-in published cells: valid, round-trip through text, found under any spelling."""

import pytest

from jnas.spaces.genotype import Genotype, MalformedGenotypeError
from jnas.spaces.published import PAPER_FIGURES, PUBLISHED, canonical_name, get_genotype

NAMES = [
    "DARTS_V1",
    "DARTS_V2",
    "PC_DARTS",
    "P_DARTS",
    "GDAS",
    "ENAS",
    "NASNet_A",
    "AmoebaNet_A",
    "PNAS",
]


def test_all_nine_cells_are_built_in():
    assert sorted(PUBLISHED) == sorted(NAMES)
    assert set(PAPER_FIGURES) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_validates_and_round_trips_through_text(name):
    g = PUBLISHED[name].validate()
    assert Genotype.parse(str(g)) == g
    assert get_genotype(str(g)) == g
    assert get_genotype(name) is g
    for cell in ("normal", "reduce"):
        edges = getattr(g, cell)
        assert len(edges) in (8, 10)  # 4 nodes (DARTS family) or 5 (NASNet family)
        assert any(i >= 2 for i in getattr(g, f"{cell}_concat"))


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("PC-DARTS", "PC_DARTS"),
        ("pcdarts", "PC_DARTS"),
        ("P-DARTS", "P_DARTS"),
        ("darts", "DARTS_V2"),
        ("DARTS-V1", "DARTS_V1"),
        ("NASNet", "NASNet_A"),
        ("NASNet-A", "NASNet_A"),
        ("AmoebaNet", "AmoebaNet_A"),
        ("PNASNet", "PNAS"),
        ("enas", "ENAS"),
        ("GDAS_V1", "GDAS"),
    ],
)
def test_other_spellings(spelling, name):
    assert canonical_name(spelling) == name
    assert get_genotype(spelling) is PUBLISHED[name]


def test_darts_v2_as_in_the_darts_code():
    # quark0/darts cnn/genotypes.py, DARTS_V2 (the paper's 2nd-order cell).
    text = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
        "reduce_concat=range(2, 6))"
    )
    assert get_genotype(text) == PUBLISHED["DARTS_V2"]


def test_file_path(tmp_path):
    path = tmp_path / "genotype.txt"
    path.write_text(str(PUBLISHED["GDAS"]) + "\n")
    assert get_genotype(str(path)) == PUBLISHED["GDAS"]


def test_unknown_name():
    with pytest.raises(MalformedGenotypeError, match="neither a known genotype"):
        get_genotype("DARTS_V3")
