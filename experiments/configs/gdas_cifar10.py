r"""GDAS search on CIFAR-10 with the official settings (Dong & Yang, CVPR 2019).

Run (needs CIFAR-10 through tfds, i.e. internet on first use):

  python -m experiments.search --config=experiments/configs/gdas_cifar10.py \
      --workdir=runs/gdas_c10

The fixed-reduction-cell variant is ``gdas_frc_cifar10.py``. Data parallel:
``--config.parallel=pmap``.

Settings, from the official code (``D-X-Y/AutoDL-Projects``:
``scripts-search/NASNet-space-search-by-GDAS.sh``, ``configs/search-opts/
GDAS-NASNet-CIFAR.config``, ``configs/search-archs/GDAS-NASNet-CIFAR.config``): the DARTS
space, C=16 and N=2 cells per stage (6 cells, reductions at 2 and 4), 250 epochs, batch
256; weights SGD (Nesterov, momentum 0.9, weight decay 5e-4, grad-norm clip 5), lr 0.025
cosine-annealed per step to 0.001; alpha Adam lr 3e-4, betas (0.5, 0.999), weight decay
1e-3; Gumbel temperature from 10 to 0.1, linear per epoch. Each step updates the weights on
a training batch, then alpha on a validation batch.

Expected (paper, Table 1): about 0.2 GPU-days of search on a V100-class GPU; the
retrained cell (DARTS protocol, 20 cells, C=36) about 2.9 % test error with 3.4M
parameters (GDAS-FRC: 2.82 %, 2.5M).
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.strategy = "gdas"
    config.model.C = 16
    config.model.layers = 6
    config.model.vmap_edges = False  # a sampled edge computes one op: edges run one by one

    config.optim_w.lr = 0.025
    config.optim_w.lr_min = 0.001
    config.optim_w.momentum = 0.9
    config.optim_w.nesterov = True
    config.optim_w.weight_decay = 5e-4
    config.optim_w.grad_clip = 5.0

    config.optim_alpha.lr = 3e-4
    config.optim_alpha.weight_decay = 1e-3

    config.search.epochs = 250
    config.search.batch_size = 256

    config.gdas = dict(
        tau_max=10.0,  # Gumbel-softmax temperature in the first epoch ...
        tau_min=0.1,  # ... and in the last, linear in between
        fixed_reduction=False,  # True: GDAS-FRC (search the normal cell only)
    )
    return config
