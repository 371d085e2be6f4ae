r"""A CPU-sized ENAS micro search for tests: cells of 2 nodes, C=4, 3 cells, 2 epochs of 3
shared-weight steps on 256 Fashion-MNIST images, 2 controller updates of 2 samples per epoch.

python -m experiments.search --config=experiments/configs/enas_tiny.py --workdir=/tmp/t

Keep test overrides to what the steps do not compile (data directory, intervals), so the
persistent compilation cache compiles it once.
"""

from experiments.configs import enas_micro_fashion_mnist


def get_config():
    config = enas_micro_fashion_mnist.get_config()
    config.seed = 0
    config.data.limit = 256
    config.space.num_nodes = 2
    config.space.C = 4
    config.space.layers = 3
    config.search.epochs = 2
    config.search.batch_size = 16
    config.search.max_steps_per_epoch = 3
    config.search.derive_samples = 3
    config.controller.hidden_size = 16
    config.controller.num_aggregate = 2
    config.controller.train_steps = 2
    config.eval_batch_size = 64
    config.checkpoint_every_steps = 2
    config.log_every_steps = 2
    config.progress = False
    return config
