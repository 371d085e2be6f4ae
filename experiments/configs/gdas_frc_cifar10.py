r"""GDAS-FRC search on CIFAR-10: the normal cell is searched, every reduction cell is the
paper's fixed hand-designed one (Dong & Yang, CVPR 2019, Sec. 3.3 and Fig. 3).

  python -m experiments.search --config=experiments/configs/gdas_frc_cifar10.py \
      --workdir=runs/gdas_frc_c10

Settings as ``gdas_cifar10.py`` (the official ``NASNet-space-search-by-GDAS-FRC.sh`` uses
the same optimiser and temperature settings). The reduction cell (``jnas.ops.frc``):
two branches of ReLU, 1x3 and 3x1 convolutions grouped in 8 (striding), BN, ReLU, 1x1,
BN, one on each cell input, and a 3x3 max pool + BN on each input; it needs model.C to be a
multiple of 4. The genotype's reduce cell spells it with the ops ``frc_conv_1x3_3x1`` and
``max_pool_3x3_bn`` (a ``none`` second edge per node).

Expected (paper, Table 1): about 0.17 GPU-days of search; the retrained network 2.82 %
test error with 2.5M parameters.
"""

from experiments.configs import gdas_cifar10


def get_config():
    config = gdas_cifar10.get_config()
    config.gdas.fixed_reduction = True
    return config
