r"""P-DARTS search on CIFAR-10 with the official settings (Chen et al., ICCV 2019).

Run (needs CIFAR-10 through tfds, i.e. internet on first use):

  python -m experiments.search --config=experiments/configs/pdarts_cifar10.py \
      --workdir=runs/pdarts_c10

One run carries the three stages; rerunning the command resumes in the stage it stopped in.
``search.epochs`` counts epochs per stage.

Settings (paper Sec. 4.1 and the official ``chenxin061/pdarts`` ``train_search.py`` with
its README's CIFAR-10 command ``--add_layers 6 --add_layers 12 --dropout_rate 0.1
--dropout_rate 0.4 --dropout_rate 0.7``): stages of 5, 11 and 17 cells (``model.layers``
+ ``pdarts.add_layers``), C=16, 8 -> 5 -> 3 candidate ops per edge (the weakest dropped
after each stage), 25 epochs per stage of which the first 10 train the weights only
(``eps_no_archs``), batch 96; weights SGD lr 0.025 cosine to 0, momentum 0.9, weight decay
3e-4, grad clip 5; alpha Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3, its gradient
norm clipped at 5; dropout after skip connections with initial rates 0.1, 0.4, 0.7 per
stage (decayed within a stage as the official code); at most M=2 skip connections in the
normal cell.

Expected (paper, Table 1): 0.3 GPU-days of search (P100); the retrained cell (DARTS
protocol) 2.50 % test error with 3.4M parameters.
"""

from experiments.configs import darts_cifar10


def get_config():
    config = darts_cifar10.get_config()
    config.strategy = "pdarts"
    config.model.C = 16
    config.model.layers = 5  # the first stage; later stages add pdarts.add_layers
    config.optim_w.lr = 0.025
    config.optim_w.lr_min = 0.0
    config.optim_alpha.lr = 6e-4
    config.optim_alpha.weight_decay = 1e-3
    config.optim_alpha.grad_clip = 5.0
    config.search.epochs = 25  # per stage
    config.search.batch_size = 96
    config.search.arch_start_epoch = 10  # per stage: weights only before
    config.pdarts = dict(
        stage=0,  # set by the runner for each stage
        num_ops=(8, 5, 3),  # candidate ops per edge in each stage
        add_layers=(0, 6, 12),  # cells added to model.layers per stage: 5, 11, 17
        add_width=(0, 0, 0),  # channels added to model.C per stage
        skip_dropout=(0.1, 0.4, 0.7),  # initial dropout rate after skip connections
        max_skips=2,  # M: skip connections allowed in the derived normal cell
    )
    return config
