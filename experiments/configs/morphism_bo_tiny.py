r"""A CPU-sized morphism search for tests: a 1-conv start network, 64 + 64 images at 8x8
pixels, one epoch of 4 steps per child, 2 rounds after the start network.

python -m experiments.search --config=experiments/configs/morphism_bo_tiny.py --workdir=/tmp/t
"""

from experiments.configs import morphism_bo_fashion_mnist


def get_config():
    config = morphism_bo_fashion_mnist.get_config()
    config.data.limit = 128
    config.data.test_limit = 128
    config.space.start = "c0=conv3x4<-input; p0=maxpool<-c0; g0=gpool<-p0; d0=dense8<-g0"
    config.space.max_layers = 8
    config.space.max_params = 5_000
    config.space.random_edits = 2
    config.child.epochs = 1
    config.child.batch_size = 16
    config.child.eval_batch_size = 64
    config.child.resolution = 8
    config.search.rounds = 2
    config.search.test_best = False
    config.morphism_bo.t_min = 1e-2  # 44 pops instead of 88
    config.morphism_bo.n_neighbours = 4
    config.retrain.epochs = 1
    config.retrain.train_limit = 128
    config.progress = False
    return config
