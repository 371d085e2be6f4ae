r"""ENAS micro search on CIFAR-10, the official setting (Pham et al., ICML 2018; melodyguan/enas,
``scripts/cifar10_micro_search.sh`` and the defaults of ``src/cifar10/main.py``).

  python -m experiments.search --config=experiments/configs/enas_micro_cifar10.py \
      --workdir=runs/enas_micro_c10

Each value below says where it comes from: ``sh`` is the search script, ``main.py`` a flag
default of ``src/cifar10/main.py`` (or a value it hard-codes), ``utils.py`` is
``src/utils.py get_train_ops``. Not modelled: the auxiliary head of the search
(``--child_use_aux_heads``, weight 0.4; the supergraph has none) and drop-path
(``--child_drop_path_keep_prob=0.60``, used by the fixed-architecture child only).

Expected (paper, Table 1): 0.45 GPU-days of search; the found cell retrained to 3.54 % test
error (2.89 % with cutout), 4.6M parameters.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.strategy = "enas"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "cifar10"
    config.data.data_dir = ml_collections.config_dict.placeholder(str)
    config.data.source = "auto"
    config.data.train_portion = 0.9  # data_utils.py read_data: the last 5,000 of 50,000 validate
    config.data.limit = 0
    config.data.crop_padding = 4  # models.py _pre_process: pad 4, random crop 32, random flip
    config.data.flip = ml_collections.config_dict.placeholder(bool)

    config.space = ml_collections.ConfigDict()
    config.space.name = "enas_micro"
    config.space.num_nodes = 5  # sh: --child_num_cells=5
    config.space.C = 20  # sh: --child_out_filters=20
    config.space.layers = 8  # sh: --child_num_layers=6 normal cells, plus 2 reduction cells

    config.optim_w = ml_collections.ConfigDict()
    config.optim_w.lr_max = 0.05  # sh: --child_lr_max=0.05 (--child_lr_cosine)
    config.optim_w.lr_min = 0.0005  # sh: --child_lr_min=0.0005
    config.optim_w.T_0 = 10  # sh: --child_lr_T_0=10 (epochs of the first cosine cycle)
    config.optim_w.T_mul = 2  # sh: --child_lr_T_mul=2 (each restart doubles the cycle)
    config.optim_w.momentum = 0.9  # utils.py: MomentumOptimizer(lr, 0.9, use_nesterov=True)
    config.optim_w.nesterov = True
    config.optim_w.l2_reg = 1e-4  # sh: --child_l2_reg=1e-4 (l2_reg * sum w^2 in the loss)
    # main.py passes clip_mode="norm", grad_bound=5.0, but utils.py's "norm" branch appends
    # the unclipped gradient (clipped.append(g)): the official search never clips.
    config.optim_w.grad_clip = 0.0

    config.controller = ml_collections.ConfigDict()
    config.controller.hidden_size = 64  # main.py: lstm_size=64, lstm_num_layers=1
    config.controller.learning_rate = 0.0035  # sh: --controller_lr=0.0035
    config.controller.b1 = 0.0  # utils.py: AdamOptimizer(lr, beta1=0.0, epsilon=1e-3)
    config.controller.b2 = 0.999  # (TensorFlow's default)
    config.controller.eps = 1e-3
    config.controller.temperature = None  # main.py: --controller_temperature default None
    config.controller.tanh_constant = 1.10  # sh: --controller_tanh_constant=1.10
    config.controller.op_tanh_reduce = 2.5  # sh: --controller_op_tanh_reduce=2.5
    config.controller.symmetric_anchors = False  # (no anchors in the micro space)
    config.controller.entropy_weight = 1e-4  # sh: --controller_entropy_weight=0.0001
    config.controller.entropy_in_reward = True  # micro_controller.py: reward += w * entropy
    config.controller.baseline_decay = 0.99  # main.py: --controller_bl_dec default 0.99
    config.controller.skip_weight = 0.0  # micro_controller.py has no skip penalty
    config.controller.skip_target = 0.4
    config.controller.num_aggregate = 10  # sh: --controller_num_aggregate=10
    config.controller.train_steps = 30  # sh: --controller_train_steps=30
    config.controller.train_every = 1  # sh: --controller_train_every=1 (epochs)

    config.search = ml_collections.ConfigDict()
    config.search.epochs = 150  # sh: --num_epochs=150 (= 10 + 20 + 40 + 80: 4 cosine cycles)
    config.search.batch_size = 160  # sh: --batch_size=160 (train and reward minibatches)
    config.search.max_steps_per_epoch = 0  # 0: a full pass over the search-train split
    # micro_child.py _model: "if self.fixed_arc is None: is_training = True": the reward's
    # forward pass uses batch statistics (and dropout) as training does.
    config.search.reward_train_mode = True
    # The paper (Sec. 2.2): sample several models, reward each on a single validation
    # minibatch, keep the best; main.py prints 10 samples per epoch.
    config.search.derive_samples = 10
    config.search.derive_batches = 1

    config.parallel = "none"  # none | pmap (data parallel over all local devices)
    config.eval_batch_size = 500
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 2
    config.log_every_steps = 50  # sh: --log_every=50
    config.progress = True
    return config
