r"""GDAS-FRC on Fashion-MNIST with a reduced network, on a CPU.

  python -m experiments.search --config=experiments/configs/gdas_frc_fashion_mnist.py \
      --workdir=runs/gdas_frc_fmnist

As ``gdas_fashion_mnist.py`` with the fixed reduction cell (``gdas_frc_cifar10.py``); C=8
keeps the reduction cells' channels multiples of 8. Expect a few minutes on a 2-core CPU.
"""

from experiments.configs import gdas_fashion_mnist


def get_config():
    config = gdas_fashion_mnist.get_config()
    config.gdas.fixed_reduction = True
    return config
