r"""PC-DARTS search on CIFAR-10 with the paper's recipe (Xu et al., ICLR 2020, Sec. 4.2).

Run (needs CIFAR-10 through tfds, i.e. internet on first use):

  python -m experiments.search --config=experiments/configs/pcdarts_cifar10.py \
      --workdir=runs/pcdarts_c10

Settings (paper and the official ``yuhuixu1993/PC-DARTS`` ``train_search.py``): the DARTS
space and supernet (C=16, 8 cells), partial channels K=4 with edge normalization, 50
epochs, batch 256; weights SGD lr 0.1 cosine to 0.001, momentum 0.9, weight decay 3e-4,
grad clip 5; alpha and beta Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3, first
order, starting after a 15-epoch warm-up of the weights alone.

Expected (paper, Table 1): 0.1 GPU-days of search (1080Ti); the retrained cell (DARTS
protocol) 2.57 +- 0.07 % test error with 3.6M parameters.
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.strategy = "pcdarts"
    config.optim_w.lr = 0.1
    config.optim_w.lr_min = 0.001
    config.optim_alpha.lr = 6e-4
    config.optim_alpha.weight_decay = 1e-3
    config.search.epochs = 50
    config.search.batch_size = 256
    config.search.arch_start_epoch = 15  # architecture updates after this warm-up
    config.pcdarts = dict(
        k=4,  # 1/k of each edge's channels go through the mixed op
        edge_norm=True,  # edge normalization (beta per edge, softmax per node)
    )
    return config
