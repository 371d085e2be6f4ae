r"""ENAS macro search on CIFAR-10, the official setting (Pham et al., ICML 2018; melodyguan/enas,
``scripts/cifar10_macro_search.sh`` and the defaults of ``src/cifar10/main.py``).

  python -m experiments.search --config=experiments/configs/enas_macro_cifar10.py \
      --workdir=runs/enas_macro_c10

As in ``enas_micro_cifar10.py``, each value says where it comes from (``sh``: the search
script; ``main.py``, ``utils.py``, ``general_controller.py``, ``general_child.py``: the
official sources). Not modelled: the search's auxiliary head (``--child_use_aux_heads``).

Expected (paper, Table 1): 0.32 GPU-days of search; the found network (with 512 filters per
layer, the paper's final setting) retrained to 4.23 % test error, 21.3M parameters.
"""

from experiments.configs import enas_micro_cifar10


def get_config():
    config = enas_micro_cifar10.get_config()
    config.space = {
        "name": "enas_macro",
        "num_layers": 12,  # sh: --child_num_layers=12
        "out_filters": 36,  # sh: --child_out_filters=36
        "num_branches": 6,  # sh: --child_num_branches=6
        "keep_prob": 0.9,  # sh: --child_keep_prob=0.90
    }
    config.optim_w.l2_reg = 2.5e-4  # sh: --child_l2_reg=0.00025

    c = config.controller
    c.learning_rate = 0.001  # sh: --controller_lr=0.001
    c.tanh_constant = 1.5  # sh: --controller_tanh_constant=1.5
    # sh passes --controller_op_tanh_reduce=2.5, but GeneralController takes no such
    # argument (it lands in **kwargs): the macro controller applies tanh_constant everywhere.
    c.op_tanh_reduce = 1.0
    # general_controller.py: the skip logits are concat([-query, query]) before the
    # temperature and tanh (P(skip) = sigmoid(2 * c * tanh(query))).
    c.symmetric_anchors = True
    c.skip_target = 0.4  # sh: --controller_skip_target=0.4
    c.skip_weight = 0.8  # sh: --controller_skip_weight=0.8
    c.num_aggregate = 20  # sh: --controller_num_aggregate=20
    c.train_steps = 50  # sh: --controller_train_steps=50

    config.search.epochs = 310  # sh: --num_epochs=310 (= 10 + 20 + 40 + 80 + 160)
    config.search.batch_size = 128  # sh: --batch_size=128
    # general_child.py build_valid_rl: _model(x_valid_shuffle, False): the reward uses the
    # running batch-norm statistics, no dropout.
    config.search.reward_train_mode = False
    return config
