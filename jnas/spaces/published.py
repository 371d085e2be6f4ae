"""Published cells of the DARTS search space family, as their papers or official code give them.

Each entry is a :class:`~jnas.spaces.genotype.Genotype` in the DARTS convention: input 0 is
``c_{k-2}``, input 1 is ``c_{k-1}``, state ``i >= 2`` is intermediate node ``i - 2``; ops
applied to the cell inputs of a reduction cell have stride 2. Names are valid
``--config.genotype=`` values; :func:`get_genotype` also accepts other spellings
(``PC-DARTS``, ``pc_darts``, ``NASNet``, ...), a ``Genotype(...)`` text, or a file path.

Sources (checked against the repositories named; cells written in another convention were
translated as noted):

* ``DARTS_V1``, ``DARTS_V2``: DARTS, Liu et al. ICLR 2019; ``quark0/darts`` ``cnn/genotypes.py``
  (first and second order; ``DARTS = DARTS_V2`` there).
* ``NASNet_A``, ``AmoebaNet_A``: as transcribed in ``quark0/darts`` ``cnn/genotypes.py``
  (``NASNet``, ``AmoebaNet``), which DARTS used for its Table 1 comparison.
* ``PNAS``: ``PNASNet`` of ``D-X-Y/AutoDL-Projects`` ``lib/nas_infer_model/DXYs/genotypes.py``;
  it equals the PNASNet-5 cell of TF-slim's ``pnasnet.py`` (hidden-state index 0 there is
  ``c_{k-1}``, i.e. DARTS input 1).
* ``PC_DARTS``: PC-DARTS, Xu et al. ICLR 2020; ``yuhuixu1993/PC-DARTS`` ``genotypes.py``
  (``PC_DARTS_cifar``, the cell searched on CIFAR-10).
* ``P_DARTS``: P-DARTS, Chen et al. ICCV 2019; ``chenxin061/pdarts`` ``genotypes.py`` (``PDARTS``).
* ``GDAS``: GDAS, Dong & Yang CVPR 2019; ``GDAS_V1`` of ``D-X-Y/AutoDL-Projects`` (the same
  cell, with its sampling weights, in the GDAS code's ``genotypes.py``).
* ``ENAS``: ENAS micro search, Pham et al. ICML 2018, the cell drawn in the paper, as
  transcribed in ``D-X-Y/AutoDL-Projects`` (``ENASNet``) and NSGA-Net's genotypes; the
  reduction cell concatenates its "loose ends" (nodes no other node reads: 2, 3, 6), as the
  ENAS code's ``_fixed_combine`` does.
"""

from __future__ import annotations

import dataclasses

from jnas.spaces.genotype import Genotype, load_genotype
from jnas.spaces.text import ASCII_SPACE

_C4 = (2, 3, 4, 5)  # concat of all four nodes (DARTS-style cells)
_C5 = (2, 3, 4, 5, 6)

PUBLISHED: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=[
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ],
        normal_concat=_C4,
        reduce=[
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ],
        reduce_concat=_C4,
    ),
    "DARTS_V2": Genotype(
        normal=[
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ],
        normal_concat=_C4,
        reduce=[
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ],
        reduce_concat=_C4,
    ),
    "PC_DARTS": Genotype(
        normal=[
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 0),
            ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0),
            ("sep_conv_3x3", 1),
            ("avg_pool_3x3", 0),
            ("dil_conv_3x3", 1),
        ],
        normal_concat=_C4,
        reduce=[
            ("sep_conv_5x5", 1),
            ("max_pool_3x3", 0),
            ("sep_conv_5x5", 1),
            ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 3),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 2),
        ],
        reduce_concat=_C4,
    ),
    "P_DARTS": Genotype(
        normal=[
            ("skip_connect", 0),
            ("dil_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 3),
            ("sep_conv_3x3", 0),
            ("dil_conv_5x5", 4),
        ],
        normal_concat=_C4,
        reduce=[
            ("avg_pool_3x3", 0),
            ("sep_conv_5x5", 1),
            ("sep_conv_3x3", 0),
            ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0),
            ("dil_conv_3x3", 1),
            ("dil_conv_3x3", 1),
            ("dil_conv_5x5", 3),
        ],
        reduce_concat=_C4,
    ),
    "GDAS": Genotype(
        normal=[
            ("skip_connect", 0),
            ("skip_connect", 1),
            ("skip_connect", 0),
            ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 3),
            ("skip_connect", 0),
            ("sep_conv_5x5", 4),
            ("sep_conv_3x3", 3),
        ],
        normal_concat=_C4,
        reduce=[
            ("sep_conv_5x5", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_5x5", 2),
            ("sep_conv_5x5", 1),
            ("dil_conv_5x5", 2),
            ("sep_conv_3x3", 1),
            ("sep_conv_5x5", 0),
            ("sep_conv_5x5", 1),
        ],
        reduce_concat=_C4,
    ),
    "ENAS": Genotype(
        normal=[
            ("sep_conv_3x3", 1),
            ("skip_connect", 1),
            ("sep_conv_5x5", 1),
            ("skip_connect", 0),
            ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 1),
            ("sep_conv_5x5", 1),
            ("avg_pool_3x3", 0),
        ],
        normal_concat=_C5,
        reduce=[
            ("sep_conv_5x5", 0),
            ("avg_pool_3x3", 1),
            ("sep_conv_3x3", 1),
            ("avg_pool_3x3", 1),
            ("sep_conv_3x3", 1),
            ("avg_pool_3x3", 1),
            ("sep_conv_5x5", 4),
            ("avg_pool_3x3", 1),
            ("sep_conv_3x3", 5),
            ("sep_conv_5x5", 0),
        ],
        reduce_concat=(2, 3, 6),
    ),
    "NASNet_A": Genotype(
        normal=[
            ("sep_conv_5x5", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_5x5", 0),
            ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 1),
            ("skip_connect", 0),
            ("avg_pool_3x3", 0),
            ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 1),
        ],
        normal_concat=_C5,
        reduce=[
            ("sep_conv_5x5", 1),
            ("sep_conv_7x7", 0),
            ("max_pool_3x3", 1),
            ("sep_conv_7x7", 0),
            ("avg_pool_3x3", 1),
            ("sep_conv_5x5", 0),
            ("skip_connect", 3),
            ("avg_pool_3x3", 2),
            ("sep_conv_3x3", 2),
            ("max_pool_3x3", 1),
        ],
        reduce_concat=(4, 5, 6),
    ),
    "AmoebaNet_A": Genotype(
        normal=[
            ("avg_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 3),
            ("sep_conv_3x3", 1),
            ("skip_connect", 1),
            ("skip_connect", 0),
            ("avg_pool_3x3", 1),
        ],
        normal_concat=(4, 5, 6),
        reduce=[
            ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1),
            ("max_pool_3x3", 0),
            ("sep_conv_7x7", 2),
            ("sep_conv_7x7", 0),
            ("avg_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("conv_7x1_1x7", 0),
            ("sep_conv_3x3", 5),
        ],
        reduce_concat=(3, 4, 6),
    ),
    "PNAS": Genotype(
        normal=[
            ("sep_conv_5x5", 0),
            ("max_pool_3x3", 0),
            ("sep_conv_7x7", 1),
            ("max_pool_3x3", 1),
            ("sep_conv_5x5", 1),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 4),
            ("max_pool_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
        ],
        normal_concat=_C5,
        reduce=[
            ("sep_conv_5x5", 0),
            ("max_pool_3x3", 0),
            ("sep_conv_7x7", 1),
            ("max_pool_3x3", 1),
            ("sep_conv_5x5", 1),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 4),
            ("max_pool_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 1),
        ],
        reduce_concat=_C5,
    ),
}


_SEPARATORS = frozenset("-_ ")


def _key(name: str) -> str | None:
    """``name`` lower-cased without the separators ``-``, ``_`` and space; None where it
    holds any other character (a non-ASCII letter or digit included: ``'ＤＡＲＴＳ'`` and
    ``'DARTS٢'`` are no spellings of a published name)."""
    if not (isinstance(name, str) and name.isascii() and len(name) <= 64):
        return None
    key = "".join(ch for ch in name.lower() if ch not in _SEPARATORS)
    return key if key.isalnum() else None


# Other spellings: "PC-DARTS", "pc_darts", "PCDARTS", "NASNet", "AmoebaNet", "PNASNet", "DARTS".
_ALIASES: dict[str, str] = {_key(n): n for n in PUBLISHED}
_ALIASES.update(
    {
        "darts": "DARTS_V2",
        "nasnet": "NASNet_A",
        "amoebanet": "AmoebaNet_A",
        "pnasnet": "PNAS",
        "pnasnet5": "PNAS",
        "enasnet": "ENAS",
        "gdasv1": "GDAS",
    }
)


def canonical_name(name: str) -> str | None:
    """The :data:`PUBLISHED` key for ``name`` in any spelling (case, ``-``, ``_`` and spaces
    ignored; ASCII only), or None."""
    key = _key(name)
    return None if key is None else _ALIASES.get(key)


def get_genotype(spec: str) -> Genotype:
    """Resolve a genotype from a published name (any spelling), a text, or a file path.

    Args:
      spec: e.g. ``"DARTS_V2"``, ``"PC-DARTS"``, ``"Genotype(normal=[...], ...)"`` or the path
        of a ``genotype.txt`` written by a search.

    Returns:
      The validated :class:`Genotype`.

    Raises:
      MalformedGenotypeError: for an unknown name (``UnknownGenotypeError``), bad text or
        an invalid cell, a path that is not a readable text file (``GenotypeFileError``);
        each subclass is listed in :mod:`jnas.spaces.genotype`.
      UnknownOpError: for an op name that is not registered (``UnknownGenotypeOpError`` is
        both).
    """
    if isinstance(spec, str):
        name = canonical_name(spec.strip(ASCII_SPACE))
        if name is not None:
            return PUBLISHED[name]
    return load_genotype(spec, PUBLISHED)


# The figures each paper publishes for its cell (CIFAR-10 parameters; ImageNet mobile-setting
# parameters and multiply-adds), for comparison with what jnas counts.
PAPER_FIGURES: dict[str, dict[str, float]] = {
    "DARTS_V1": {"cifar_params": 3.3e6},  # DARTS Table 1 (first order)
    "DARTS_V2": {"cifar_params": 3.3e6, "imagenet_params": 4.7e6, "imagenet_madds": 574e6},
    # PC-DARTS Tables 1-2; 586M is its CIFAR-searched cell (597M: the ImageNet-searched one).
    "PC_DARTS": {"cifar_params": 3.6e6, "imagenet_params": 5.3e6, "imagenet_madds": 586e6},
    "P_DARTS": {"cifar_params": 3.4e6, "imagenet_params": 4.9e6, "imagenet_madds": 557e6},
    "GDAS": {"cifar_params": 3.4e6, "imagenet_params": 5.3e6, "imagenet_madds": 581e6},
    "ENAS": {"cifar_params": 4.6e6},
    "NASNet_A": {"cifar_params": 3.3e6, "imagenet_params": 5.3e6, "imagenet_madds": 564e6},
    "AmoebaNet_A": {"cifar_params": 3.2e6, "imagenet_params": 5.1e6, "imagenet_madds": 570e6},
    "PNAS": {"cifar_params": 3.2e6, "imagenet_params": 5.1e6, "imagenet_madds": 588e6},
}


@dataclasses.dataclass(frozen=True)
class PaperNetwork:
    """The CIFAR network a paper evaluated its cell in, where it differs from DARTS's.

    Attributes:
      C: initial channels.
      layers: cells in all (reduction cells included).
      note: what differs and where it comes from.
      genotype: the cell as that paper's own network wires it, when it differs.
    """

    C: int
    layers: int
    note: str
    genotype: Genotype | None = None


PAPER_NETWORKS: dict[str, PaperNetwork] = {
    "NASNet_A": PaperNetwork(
        C=32,
        layers=20,
        note=(
            "NASNet-A (6 @ 768): TF-slim cifar_config, 32 filters, 18 normal + 2 reduction "
            "cells; its normal cell also concatenates c_{k-2} (6 x 128 = 768 channels at the "
            "end), which the DARTS transcription omits"
        ),
        genotype=dataclasses.replace(PUBLISHED["NASNet_A"], normal_concat=(0, 2, 3, 4, 5, 6)),
    ),
    "PNAS": PaperNetwork(
        C=48,
        layers=9,
        note=(
            "PNASNet-5 (N=3, F=48): 9 cells in all, the 2 reduction cells included, as "
            "TF-slim's pnasnet.py counts num_cells"
        ),
    ),
    "ENAS": PaperNetwork(
        C=36,
        layers=17,
        note=(
            "the DARTS network in the size of ENAS's final one (cifar10_micro_final.sh: 15 "
            "normal + 2 reduction cells, 36 filters); the published 4.6M is not reproduced by "
            "the cell of the paper's figure in either DARTS network (the 'enas' row builds "
            "ENAS's own)"
        ),
    ),
}
