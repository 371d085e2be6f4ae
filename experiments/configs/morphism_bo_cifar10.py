r"""Bayesian optimisation over network morphisms on CIFAR-10, sized for one accelerator.

  python -m experiments.search --config=experiments/configs/morphism_bo_cifar10.py \
      --workdir=runs/mbo_c10 [--config.strategy=morphism_walk|graph_random]
  python -m experiments.train --config=experiments/configs/morphism_bo_cifar10.py \
      --config.retrain.search_workdir=runs/mbo_c10 --workdir=runs/mbo_c10_retrain

Auto-Keras's start network (CnnGenerator, 64 filters) on 32x32x3 images, 10,000 + 10,000
search images, 5 epochs per child, 50 rounds; limits 40 layers and 2 million parameters
(Auto-Keras 0.3.7's MAX_MODEL_SIZE is 2^25 parameters, for a GPU). Needs CIFAR-10 prepared
by tfds (``--config.data.data_dir`` or ``$TFDS_DATA_DIR``); on this project's CPU machines
there is none offline (the run stops at once with ``DatasetNotFoundError`` saying how to
provide it). The retraining trains the best graph for 50 epochs on all 50,000 images.
"""

from experiments.configs import morphism_bo_fashion_mnist


def get_config():
    config = morphism_bo_fashion_mnist.get_config()
    config.data.name = "cifar10"
    config.data.limit = 20_000
    config.data.test_limit = 0
    config.space.start = (
        "c0=conv3x64<-input; p0=maxpool<-c0; c1=conv3x64<-p0; p1=maxpool<-c1; "
        "c2=conv3x64<-p1; p2=maxpool<-c2; g0=gpool<-p2; d0=dense64<-g0"
    )
    config.space.max_layers = 40
    config.space.max_params = 2_000_000
    config.space.input_channels = 3
    config.child.epochs = 5
    config.child.batch_size = 128
    config.search.rounds = 50
    config.retrain.epochs = 50
    config.retrain.train_limit = 0
    return config
