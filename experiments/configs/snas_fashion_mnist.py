r"""SNAS-style search (soft Gumbel-softmax op weights) on Fashion-MNIST, on a CPU.

  python -m experiments.search --config=experiments/configs/snas_fashion_mnist.py \
      --workdir=runs/snas_fmnist

The DARTS quickstart's budget and recipe (``darts_fashion_mnist.py``: a 5-cell, C=8
supernet, first-order updates, then a retraining of the found cell) with the op weights
sampled as in SNAS (``jnas/strategies/snas.py``): the temperature starts at 1 and falls by
3% per epoch, to at least 0.03.
"""

import ml_collections

from experiments.configs import darts_cifar10, darts_fashion_mnist


def get_config():
    config = darts_fashion_mnist.with_quickstart_budget(darts_cifar10.get_config())
    config.strategy = "snas"
    config.search.hypergradient = "first"
    config.snas = ml_collections.ConfigDict(dict(tau_max=1.0, tau_min=0.03, tau_decay=0.97))
    return config
