r"""Hyperband (Li et al., JMLR 2018) over the NAS-RL space on Fashion-MNIST, with real child
training and the learning-curve stop (Domhan et al., IJCAI 2015), sized for a 2-core CPU.

  python -m experiments.search \
      --config=experiments/configs/nasrl_hyperband_fashion_mnist.py --workdir=runs/nasrl_hb
  python -m jnas.estimation.reference --workdir=runs/nasrl_hb   # every child trained fully

The strategy (``jnas.strategies.multi_fidelity.Hyperband``) judges each child at a budget of
epochs from the ladder 1, 3, 9 (``min_budget`` 1, ``max_budget`` 9, ``eta`` 3: the paper's
default eta); one cycle of brackets asks 9 children at 1 epoch (3 go on to 3 epochs, 1 to
9), 5 at 3 epochs (1 to 9) and 3 at 9 epochs: 22 trainings of 17 architectures, 78 epochs
against 153 for training the 17 for 9 epochs each. Each training is from scratch (cosine
decay over its own budget), one child per round (``children_per_round`` 1: the paper's
sequential Hyperband). ``early_stop`` stops a child, after each of its epochs from the
fourth (with three points only the two-parameter curve families can be fitted), when its
learning curve gives it a probability below 0.05 (the paper's threshold) of ending above
the best accuracy seen at its budget in earlier rounds; the curve's noise is taken as at
least 0.5 / sqrt(512) = 0.022, the largest standard error of an accuracy on 512 images.

The children: the NAS-RL chain CNN of ``nasrl_fashion_mnist.py`` (4 layers, filter sizes
{1, 3, 5, 7}, {8, 12, 16, 24} filters, skip connections), trained with SGD (Nesterov 0.9,
lr 0.05, batch 32) on 512 search-train images and scored on 512 search-val images (the
first 1,024 training images, halved), both resized to 14x14 (a fidelity of every child:
``child.resolution``).

``summary.json`` reports ``child_epochs`` (trained) against ``child_epochs_full`` (each
architecture once for 9 epochs) and ``child_epochs_saved``; ``python -m
jnas.estimation.reference`` trains every architecture of the history for the full 9 epochs
(reusing those already trained there) and compares the best of them with Hyperband's
choice. Measured figures: docs/multi_fidelity.md, "On real training".
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import nasrl_fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    config = nasrl_fashion_mnist.get_config()
    config.strategy = "hyperband"
    config.data.limit = 1_024  # 512 search-train + 512 search-val images

    # Full fidelity: 9 epochs (16 steps of 32 images each) over the 512 search-train images
    # at 14x14 pixels (the budget ladder's top; `--config.child.resolution=None`: 28x28,
    # about 3x the time per step).
    config.child.batch_size = 32
    config.child.epochs = 9
    config.child.resolution = config_dict.placeholder(int)  # None: the images' own
    config.child.resolution = 14
    # (child.num_steps, 50, is not used: epochs set the training length.)

    config.search.rounds = 22  # one cycle of Hyperband's brackets at eta 3 over 1..9 epochs
    config.search.children_per_round = 1

    # jnas.strategies.multi_fidelity.Hyperband: the HpBandSter ladder max * eta^-k.
    config.hyperband = ml_collections.ConfigDict(
        dict(min_budget=1.0, max_budget=9.0, eta=3.0, budget_resource="epochs")
    )
    # jnas.estimation.curves.CurveStopper (Domhan et al.: threshold 0.05).
    config.early_stop = ml_collections.ConfigDict(
        dict(enabled=True, threshold=0.05, min_points=4, noise_floor=0.005)
    )
    return config
