r"""GDAS on Fashion-MNIST with a reduced network, on a CPU (the DARTS quickstart's budget).

  python -m experiments.search --config=experiments/configs/gdas_fashion_mnist.py \
      --workdir=runs/gdas_fmnist

The quickstart's budget (``darts_fashion_mnist.py``: a 5-cell, C=8 supernet, 2x2,000
images, its batch size and epochs) with the GDAS recipe of ``gdas_cifar10.py`` (the
temperature falls from 10 in the first epoch to 0.1 in the last), followed, as the
quickstart, by a retraining of the found cell (``config.retrain``;
``--config.retrain.enabled=False`` skips it). A step computes one op per edge, so it is
several times faster than a DARTS step; most of the search's time is compilation.
"""

from experiments.configs import darts_fashion_mnist, gdas_cifar10


def get_config():
    config = darts_fashion_mnist.with_quickstart_budget(gdas_cifar10.get_config())
    return config
