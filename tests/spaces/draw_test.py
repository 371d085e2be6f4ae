"""write_cell_pictures: the four pictures of a genotype's cells, each showing that cell's ops."""

import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import numpy as np
import pytest

from jnas.spaces.draw import write_cell_pictures
from jnas.spaces.genotype import MalformedGenotypeError
from jnas.spaces.published import PUBLISHED

_SVG = "{http://www.w3.org/2000/svg}"


def _svg_texts(path):
    root = ET.parse(path).getroot()  # well-formed XML or this raises
    assert root.tag == f"{_SVG}svg"
    return ["".join(t.itertext()).strip() for t in root.iter(f"{_SVG}text")]


def test_writes_png_and_svg_of_both_cells(tmp_path):
    genotype = PUBLISHED["DARTS_V2"]
    out = tmp_path / "cells"  # created by the call
    paths = write_cell_pictures(genotype, str(out))
    assert paths == [str(out / n) for n in ("normal.png", "normal.svg", "reduce.png", "reduce.svg")]
    for png in paths[0::2]:
        image = mpimg.imread(png)  # decodes, i.e. a real PNG
        assert image.ndim == 3 and min(image.shape[:2]) > 50
        assert image[..., :3].std() > 0.05  # not a blank canvas
    for cell, svg in zip(("normal", "reduce"), paths[1::2]):
        texts = _svg_texts(svg)
        # Every op of the cell labels an edge, and every state is a box.
        ops = [op for op, _ in getattr(genotype, cell)]
        for op in set(ops):
            assert texts.count(op) == ops.count(op), (cell, op)
        assert {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"} <= set(texts)


def test_pictures_follow_the_genotype(tmp_path):
    # The same cell twice draws the same picture; a cell with other ops draws another.
    a = write_cell_pictures(PUBLISHED["DARTS_V2"], str(tmp_path / "a"))
    b = write_cell_pictures(str(PUBLISHED["DARTS_V2"]), str(tmp_path / "b"))  # from its text
    c = write_cell_pictures("DARTS_V1", str(tmp_path / "c"))  # a published name
    normal = lambda paths: mpimg.imread(paths[0])
    np.testing.assert_array_equal(normal(a), normal(b))
    assert normal(a).shape != normal(c).shape or not np.array_equal(normal(a), normal(c))
    v1_ops = {op for op, _ in PUBLISHED["DARTS_V1"].normal}
    assert v1_ops <= set(_svg_texts(c[1]))


def test_bad_genotype_is_named(tmp_path):
    with pytest.raises(MalformedGenotypeError):
        write_cell_pictures("Genotype(normal=[('sep_conv_3x3', 0)]", str(tmp_path))
    with pytest.raises(MalformedGenotypeError):
        write_cell_pictures("NO_SUCH_CELL", str(tmp_path))
    with pytest.raises(TypeError, match="Genotype or its text"):
        write_cell_pictures(42, str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing written for bad input
