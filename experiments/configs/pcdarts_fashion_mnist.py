r"""PC-DARTS on Fashion-MNIST with a reduced network, on a CPU (the DARTS quickstart's budget).

  python -m experiments.search --config=experiments/configs/pcdarts_fashion_mnist.py \
      --workdir=runs/pcdarts_fmnist

The quickstart's budget (``darts_fashion_mnist.py``: a 5-cell, C=8 supernet, 2x2,000
images, its batch size and 2 epochs) with the PC-DARTS recipe of ``pcdarts_cifar10.py``
scaled to it: K=4, edge normalization, a 1-epoch warm-up of the weights (15 of 50 epochs in
the paper), and the paper's lr 0.1 at batch 256 scaled linearly to the batch size. As the
quickstart, the found cell is then retrained (``config.retrain``;
``--config.retrain.enabled=False`` skips it).
"""

from experiments.configs import darts_fashion_mnist, pcdarts_cifar10


def get_config():
    config = darts_fashion_mnist.with_quickstart_budget(pcdarts_cifar10.get_config())
    config.optim_w.lr = 0.1 * config.search.batch_size / 256
    config.search.arch_start_epoch = 1
    return config
