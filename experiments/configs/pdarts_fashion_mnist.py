r"""P-DARTS on Fashion-MNIST with reduced networks, on a CPU.

  python -m experiments.search --config=experiments/configs/pdarts_fashion_mnist.py \
      --workdir=runs/pdarts_fmnist

The official three stages scaled to the DARTS quickstart (``darts_fashion_mnist.py``: C=8,
2x2,000 images, its batch size): stages of 3, 4 and 6 cells with 8, 5 and 3 ops per edge,
2 epochs per stage of which the first trains the weights only, skip dropout 0.1 / 0.4 /
0.7, M=2; then, as the quickstart, a retraining of the found cell (``config.retrain``;
``--config.retrain.enabled=False`` skips it). Most of the search's time is compiling the
three supernets.
"""

from experiments.configs import darts_fashion_mnist, pdarts_cifar10


def get_config():
    config = darts_fashion_mnist.with_quickstart_budget(pdarts_cifar10.get_config())
    config.model.layers = 3
    config.pdarts.add_layers = (0, 1, 3)
    config.search.epochs = 2  # per stage
    config.search.arch_start_epoch = 1
    return config
