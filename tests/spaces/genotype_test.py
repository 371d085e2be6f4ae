import pytest

from jnas.ops.primitives import UnknownOpError
from jnas.spaces.genotype import Genotype, MalformedGenotypeError, load_genotype

# The DARTS code's genotypes.py writes DARTS_V2 like this (with range(2, 6)).
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_parse_darts_text_and_round_trip():
    g = Genotype.parse(DARTS_V2_TEXT)
    assert g.normal[7] == ("dil_conv_3x3", 2)
    assert g.normal_concat == (2, 3, 4, 5)
    text = str(g)
    assert text.startswith("Genotype(normal=[('sep_conv_3x3', 0)")
    assert "normal_concat=[2, 3, 4, 5]" in text
    assert Genotype.parse(text) == g


def test_to_dict_round_trip():
    g = Genotype.parse(DARTS_V2_TEXT)
    assert Genotype(**g.to_dict()) == g


@pytest.mark.parametrize(
    "text, match",
    [
        ("Genotype(normal=[", "not valid syntax"),
        ("Foo(normal=[])", "must look like Genotype"),
        (DARTS_V2_TEXT.replace("reduce_concat=range(2, 6)", "extra=1"), "unknown genotype field"),
        (DARTS_V2_TEXT.replace(", reduce_concat=range(2, 6)", ""), "missing field"),
        (DARTS_V2_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "input index 5"),
        (DARTS_V2_TEXT.replace("('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ", "", 1), "concat"),
        (DARTS_V2_TEXT.replace("normal_concat=range(2, 6)", "normal_concat=[2, 9]"), "concat"),
        (DARTS_V2_TEXT.replace("normal=[", "normal=__import__('os')[", 1), "literal"),
    ],
)
def test_malformed(text, match):
    with pytest.raises(MalformedGenotypeError, match=match):
        Genotype.parse(text)


def test_odd_edge_count_rejected():
    text = DARTS_V2_TEXT.replace("('sep_conv_3x3', 0), ", "", 1)
    with pytest.raises(MalformedGenotypeError, match="two edges per node"):
        Genotype.parse(text)


def test_forward_index_rejected():
    # node 0 may only read states 0 and 1.
    text = DARTS_V2_TEXT.replace("normal=[('sep_conv_3x3', 0)", "normal=[('sep_conv_3x3', 2)")
    with pytest.raises(MalformedGenotypeError, match="node 0 .* input index 2"):
        Genotype.parse(text)


def test_unknown_op():
    with pytest.raises(UnknownOpError, match="unknown op 'conv_9x9'"):
        Genotype.parse(DARTS_V2_TEXT.replace("dil_conv_3x3", "conv_9x9"))


def test_load_genotype_by_name_text_and_file(tmp_path):
    g = Genotype.parse(DARTS_V2_TEXT)
    assert load_genotype("V2", {"V2": g}) is g
    assert load_genotype(DARTS_V2_TEXT) == g
    path = tmp_path / "genotype.txt"
    path.write_text(str(g) + "\n")
    assert load_genotype(str(path)) == g
    with pytest.raises(MalformedGenotypeError, match="neither a known genotype name"):
        load_genotype("DARTS_V9", {"V2": g})
