r"""Retrain a cell on ImageNet, mobile setting, with the DARTS recipe (Liu et al. 2019, Sec. A.3).

  python -m experiments.train --config=experiments/configs/eval_imagenet.py \
      --config.genotype=DARTS_V2 --workdir=runs/eval_imagenet --config.parallel=pmap

Config only here: ImageNet is not one of the data sets ``jnas.data`` loads (the run stops
with a clear error naming the known ones). The network builds, counts its parameters
(4,718,752 for DARTS_V2, as the DARTS code) and runs a step on a tiny batch in the tests.

The recipe: 224x224 inputs, C=48, 14 cells, the DARTS ImageNet stem (three stride-2 3x3
convs), auxiliary head (weight 0.4), label smoothing 0.1, SGD momentum 0.9, lr 0.1 decayed by
0.97 every epoch, weight decay 3e-5, batch 128, 250 epochs, gradient clip 5, no drop-path.
Expected (paper, Table 3): DARTS_V2 26.7 % top-1 error, 574M multiply-adds.
"""

from experiments.configs import eval_cifar10


def get_config():
    config = eval_cifar10.get_config()
    config.data.name = "imagenet2012"
    config.data.cutout_length = 0
    config.model.network = "imagenet"
    config.model.C = 48
    config.model.layers = 14
    config.optim.lr = 0.1
    config.optim.schedule = "step"
    config.optim.decay_rate = 0.97
    config.optim.decay_every_epochs = 1
    config.optim.weight_decay = 3e-5
    config.train.epochs = 250
    config.train.batch_size = 128
    config.train.drop_path_prob = 0.0
    config.train.label_smoothing = 0.1
    config.train.eval_batch_size = 250
    return config
