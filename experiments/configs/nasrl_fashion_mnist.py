r"""NAS-RL (Zoph & Le, ICLR 2017) on Fashion-MNIST with real child networks, sized for a CPU.

  python -m experiments.search --config=experiments/configs/nasrl_fashion_mnist.py \
      --workdir=runs/nasrl [--config.strategy=random|evolution] [--config.search.rounds=10]

The REINFORCE controller (`jnas.strategies.reinforce`) samples a population of
`children_per_round` (m) architectures of the chain-CNN space (`jnas.spaces.nasrl`) per round;
each new child is trained briefly on the search-train half of the first `data.limit` training
images and its validation accuracy on the other half is the reward (`jnas.runner.discrete`).
The runner names no space and no strategy: `space.name` and `strategy` are looked up in their
registries (`jnas.spaces.base.SPACES`, `jnas.strategies.base.STRATEGIES`), and the section
named like the strategy holds its options. Children of a round train
concurrently, one per local device. Rerunning the command resumes from the last round's
checkpoint; `history.jsonl` keeps every trained child, and none is trained twice.

As in the paper: an LSTM controller of 35 units (one layer here, the paper has two), Adam with
learning rate 0.0006, weights initialised in [-0.08, 0.08], an exponential moving average of
past rewards as baseline (the paper gives no decay; 0.9 as NAS-Bench-201's REINFORCE),
m = 8 children per controller batch, filter heights/widths {1, 3, 5, 7}, skip connections by
anchor points, stride 1. Reduced for a CPU: 4 layers (the paper grows from 6 to 15), {8, 12,
16, 24} filters (the paper: {24, 36, 48, 64}; `--config.space.num_filters="(24,36,48,64)"`
costs about 3x the time per child), children trained for 50 SGD steps of 32 images (the paper:
50 epochs), 2,000 images (1,000 search-train, 1,000 search-val), 3 rounds (the paper: 12,800
children); the reward is the validation accuracy (the paper cubes the best of the last 5
epochs). On one CPU device the children of a round train one after the other; most of a
child's time there is XLA compilation (every architecture is a new program).

Measured on the shared 2-core CPU (one device, load 4-6, no compilation cache): 4 min for the
3 rounds (24 children, about 10 s each, mostly compilation), best validation accuracy 0.505
(`1x1/s1/f12; 7x5/s1/f24; 7x5/s1/f16<-0; 5x7/s1/f24<-0,1`); a run killed in round 2 and
rerun gave the same history, rewards bit for bit.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.strategy = "reinforce"  # reinforce | random | evolution
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"
    config.data.data_dir = config_dict.placeholder(str)
    config.data.source = "auto"  # auto | tfds | idx
    config.data.train_portion = 0.5  # search-train / search-val split of the train set
    config.data.limit = 2_000  # use only the first `limit` train images (0: all)

    config.space = ml_collections.ConfigDict()
    config.space.name = "nasrl"
    config.space.num_layers = 4
    config.space.filter_sizes = (1, 3, 5, 7)
    config.space.strides = (1, 2, 3)
    config.space.num_filters = (8, 12, 16, 24)  # the paper: (24, 36, 48, 64)
    config.space.predict_stride = False
    config.space.skip_connections = True

    # The low-fidelity training of each child (jnas.spaces.child.ChildTrainConfig), and the
    # fidelity: data_fraction (train on the first fraction of the search-train images) and
    # width (a multiplier of the network's channels, here the filter counts).
    config.child = ml_collections.ConfigDict()
    config.child.num_steps = 50
    config.child.batch_size = 32
    config.child.learning_rate = 0.05
    config.child.momentum = 0.9
    config.child.weight_decay = 1e-4
    config.child.eval_batch_size = 500
    config.child.num_classes = 0  # 0: the data set's
    config.child.data_fraction = 1.0
    config.child.width = 1.0

    config.search = ml_collections.ConfigDict()
    config.search.rounds = 3
    config.search.children_per_round = 8  # m, the population of one ask; one tell per round
    config.search.num_devices = 0  # devices children are spread over (0: all local devices)
    config.search.workers = 0  # threads training children (0: one per device)

    # Each strategy's options (the one named by config.strategy is used): its static options
    # (shapes: REINFORCE's hidden_size, evolution's pool_size P and sample_size S) and its
    # params (traced: REINFORCE's learning_rate, baseline_decay, entropy_weight).
    config.reinforce = ml_collections.ConfigDict(
        dict(learning_rate=6e-4, baseline_decay=0.9, entropy_weight=0.0, hidden_size=35)
    )
    config.evolution = ml_collections.ConfigDict(dict(pool_size=8, sample_size=3))
    config.random = ml_collections.ConfigDict()

    config.keep_checkpoints = 2
    config.progress = True
    return config
