r"""Retrain an ENAS macro network on CIFAR-10 (the official final training's settings).

  python -m experiments.train --config=experiments/configs/eval_enas_macro_cifar10.py \
      --workdir=runs/eval_enas_macro

``config.space`` names the macro space (``jnas.spaces.enas_macro``) and its size;
``config.genotype`` is the network's text (``conv_3x3; sep_conv_5x5<-0; ...``) or the path of
the ``genotype.txt`` an ENAS macro search wrote (a searched network has the search's 12
layers: set ``--config.space.num_layers=12 --config.space.num_branches=6``). The default is
the architecture of the official ``scripts/cifar10_macro_final.sh`` (``fixed_arc``, 24
layers, ops 0-3), read in this space.

Values from melodyguan/enas (``sh``: scripts/cifar10_macro_final.sh; ``main.py``,
``utils.py``: src/cifar10/main.py, src/utils.py): 24 layers, 96 filters, 4 branches, dropout
keep 0.5, batch 100, 310 epochs, learning rate 0.05 -> 0.001 by cosine, Nesterov momentum
0.9, L2 2e-4 on the loss (= weight decay 4e-4 on the gradient), gradient norm bound 5.
Differences: the official cosine restarts (T_0 = 10, T_mul = 2) are one cosine here; its
gradient bound is per variable (``clip_mode="norm"``), here global; its fixed-architecture
path builds ops 1 and 3 as plain convolutions and combines skips by concatenation and a 1x1
conv (see the space's docstring), here the search child's network is retrained.
"""

from experiments.configs import eval_cifar10
from jnas.spaces.enas_macro import OFFICIAL_FINAL_ARC, EnasMacroSpace


def get_config():
    config = eval_cifar10.get_config()
    config.space = {
        "name": "enas_macro",
        "num_layers": 24,  # sh: --child_num_layers=24
        "out_filters": 96,  # sh: --child_out_filters=96
        "num_branches": 4,  # sh: --child_num_branches=4
        "keep_prob": 0.5,  # sh: --child_keep_prob=0.50
    }
    space = EnasMacroSpace(**{k: v for k, v in config.space.items() if k != "name"})
    config.genotype = space.to_text(OFFICIAL_FINAL_ARC)  # sh: --child_fixed_arc
    config.model.auxiliary = False  # the macro child has no auxiliary head
    config.data.cutout_length = 0  # sh: no --child_cutout_size
    config.optim.lr = 0.05  # sh: --child_lr_max=0.05
    config.optim.lr_min = 0.001  # sh: --child_lr_min=0.001
    config.optim.nesterov = True  # utils.py: MomentumOptimizer(lr, 0.9, use_nesterov=True)
    config.optim.weight_decay = 4e-4  # sh: --child_l2_reg=2e-4 on the loss: 2 * 2e-4
    config.optim.grad_clip = 5.0  # main.py: child_grad_bound 5.0
    config.train.epochs = 310  # sh: --num_epochs=310
    config.train.batch_size = 100  # sh: --batch_size=100
    config.train.drop_path_prob = 0.0  # the macro network has no paths to drop
    config.train.eval_batch_size = 500
    return config
