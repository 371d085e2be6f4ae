r"""Retrain a cell on CIFAR-10 with the DARTS evaluation recipe (Liu et al. 2019, Sec. A.2).

  python -m experiments.train --config=experiments/configs/eval_cifar10.py \
      --config.genotype=DARTS_V2 --workdir=runs/eval_darts_v2

``--config.genotype`` takes a published name (``python -m experiments.cells`` lists them), a
``Genotype(...)`` text, or the path of a ``genotype.txt`` written by a search. Rerunning the
same command resumes from the last checkpoint. Data parallel: ``--config.parallel=pmap``.

The network: stem 3C, 20 cells at C=36, reductions at 1/3 and 2/3, auxiliary head (weight
0.4) after the 2/3 cell, drop-path rising linearly to 0.2; cutout 16; SGD momentum 0.9, lr
0.025 cosine per epoch, weight decay 3e-4, batch 96, 600 epochs, gradient clip 5.

Expected (paper, Table 1): DARTS_V2 2.76 +- 0.09 % test error (97.24 %), 3.3M parameters,
about 1.5 GPU-days on a 1080Ti-class GPU. Needs CIFAR-10 through tfds (internet on first use,
or ``--config.data.data_dir``).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from jnas.ops import settings


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.genotype = "DARTS_V2"  # a published name, a Genotype(...) text or a file path

    config.data = ml_collections.ConfigDict()
    config.data.name = "cifar10"
    config.data.data_dir = placeholder(str)
    config.data.source = "auto"  # auto | tfds | idx
    config.data.limit = 0  # use only the first `limit` training images (0: all)
    config.data.test_limit = 0  # test on the first `test_limit` test images (0: all)
    config.data.crop_padding = placeholder(int)  # None: the data set's default (4 for CIFAR)
    config.data.flip = placeholder(bool)  # None: the data set's default
    config.data.cutout_length = 16

    config.model = ml_collections.ConfigDict()
    config.model.network = "cifar"  # cifar | imagenet
    config.model.C = 36
    config.model.layers = 20
    config.model.auxiliary = True
    # One nn.scan per run of identical cells: a smaller program to compile, the same
    # parameters and function (benchmarks/train_step.py --scan_cells compares them).
    config.model.scan_cells = False
    # The dtype the network computes in: "float32", or "bfloat16" (mixed precision: weights,
    # optimizer state, batch statistics and the loss stay float32; jnas/ops/precision.py).
    config.model.compute_dtype = "float32"

    config.optim = ml_collections.ConfigDict()
    config.optim.lr = 0.025
    config.optim.lr_min = 0.0
    config.optim.schedule = "cosine"  # cosine (per epoch) | step (decay_rate per epoch)
    config.optim.decay_rate = 0.97
    config.optim.decay_every_epochs = 1
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.weight_decay = 3e-4
    config.optim.grad_clip = 5.0

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 600
    config.train.batch_size = 96
    config.train.auxiliary_weight = 0.4
    config.train.drop_path_prob = 0.2  # reached at the last epoch, rising linearly from 0
    config.train.label_smoothing = 0.0
    config.train.max_steps_per_epoch = 0  # 0: a full pass over the training set
    config.train.eval_every_epochs = 1  # test pass every so many epochs (0: only at the end)
    config.train.eval_batch_size = 500
    config.train.stop_after_steps = 0  # stop early, as if killed (tests of resumption)

    config.parallel = "none"  # none | pmap (data parallel over all local devices)
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 2
    config.keep_best = True  # also keep the checkpoint with the best test accuracy
    config.log_every_steps = 50
    config.progress = True
    # Which program the steps compile on the CPU backend (jnas.ops.settings): native kernels
    # (all, batch norm, 1x1 weight gradients) and XLA's CPU options; each "auto", true or
    # false (--config.runtime.native_bn=false). JNAS_NATIVE=0 etc. override them.
    config.runtime = settings.config_section()
    return config
