r"""Speed and memory of one retraining step: the CIFAR DARTS_V2 evaluation network.

  python benchmarks/train_step.py                      # batch 96, the DARTS recipe
  python benchmarks/train_step.py --batch=32,96 --json=train_step.json

The step is the one ``experiments.train`` runs: C=36, 20 cells, auxiliary head (weight 0.4),
drop-path (at 0.1, mid-training), SGD with momentum, weight decay and gradient clipping;
forward, backward and update, on whatever backend JAX has. For each batch size it prints
images per second, the median step time, the compile time and the peak memory (GPU/TPU: the
device's peak bytes in use; CPU: the process's peak resident memory, compilation included),
and with ``--json`` writes them as a list of objects with the keys ``batch``,
``images_per_s``, ``step_s_median``, ``compile_s``, ``peak_mem_mb`` and ``backend`` (plus
``cpu_s_median``, the process CPU time per step, and the settings).

Reference on the 2-core CPU of the project machines (PERF.md): the official PyTorch DARTS
code runs one forward+backward of this network at batch 32 in about 3.1 s.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jnas.runtime  # noqa: E402
from benchmarks.flops import compiled_flops, describe, flops_fields  # noqa: E402
from jnas.ops import precision, settings
from jnas.runner import setup_jax
from jnas.runner.train_step import Retrainer, create_optimizer
from jnas.spaces.cells import build_network
from jnas.spaces.published import get_genotype

FLAGS = flags.FLAGS
flags.DEFINE_list("batch", ["96"], "Batch size(s), comma-separated.")
flags.DEFINE_integer("steps", 5, "Timed steps per batch size (after the warm-up steps).")
flags.DEFINE_integer(
    "warmup",
    3,
    "Untimed steps first: the first runs the compiled program's one-off set-up, the next let "
    "the heap reach its steady size (jnas.runtime).",
)
flags.DEFINE_enum(
    "compute_dtype",
    "float32",
    ["float32", "bfloat16"],
    "The dtype the network computes in (config.model.compute_dtype; bfloat16: mixed precision, "
    "weights and optimizer state float32).",
)
flags.DEFINE_float(
    "peak_tflops",
    None,
    "The device's peak TFLOP/s at --compute_dtype (from its data sheet): rows then give the "
    "step's achieved FLOP/s as a percentage of it.",
)
flags.DEFINE_string("json", None, "Write the rows as a JSON list to this path.")
flags.DEFINE_string("genotype", "DARTS_V2", "Genotype: name, text or file.")
flags.DEFINE_integer("C", 36, "Initial channels.")
flags.DEFINE_integer("layers", 20, "Cells.")
flags.DEFINE_bool(
    "scan_cells", False, "One nn.scan per run of identical cells (eval_cifar10.py: off)."
)
flags.DEFINE_bool("auxiliary", True, "With the auxiliary head.")
flags.DEFINE_float("drop_path_prob", 0.2, "Final drop-path probability (half of it is used).")
flags.DEFINE_string(
    "compilation_cache",
    None,
    "JAX's persistent compilation cache directory (as experiments.train uses one): a second run "
    "loads the step from it. On the 2-core CPU a loaded step ran ~12% faster than a freshly "
    "compiled one (BUILD.md). Default: no cache, every run compiles.",
)


def _peak_mem_mb(device) -> tuple[float, str]:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak bytes in use"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024, "process peak RSS"


def bench(batch: int) -> dict:
    """Compile and time the train step at one batch size (the runtime switches of
    ``jnas.ops.settings`` from the environment: ``JNAS_NATIVE=0`` etc.)."""
    with settings.use(None) as runtime:
        return _bench(batch, runtime)


def _bench(batch: int, runtime: settings.Resolved) -> dict:
    model = build_network(
        "cifar",
        get_genotype(FLAGS.genotype),
        C=FLAGS.C,
        layers=FLAGS.layers,
        num_classes=10,
        auxiliary=FLAGS.auxiliary,
        scan_cells=FLAGS.scan_cells,
    )
    optim = ml_collections.ConfigDict(
        dict(
            lr=0.025,
            lr_min=0.0,
            schedule="cosine",
            momentum=0.9,
            nesterov=False,
            weight_decay=3e-4,
            grad_clip=5.0,
            decay_rate=0.97,
            decay_every_epochs=1,
        )
    )
    epochs, steps_per_epoch = 600, 50_000 // batch
    tx, lr_fn = create_optimizer(optim, epochs, steps_per_epoch)
    trainer = Retrainer(
        model,
        tx,
        lr_fn,
        steps_per_epoch,
        epochs,
        drop_path_prob=FLAGS.drop_path_prob,
        aux_weight=0.4 if FLAGS.auxiliary else 0.0,
        compute_dtype=precision.compute_dtype(FLAGS.compute_dtype),
    )
    rng = np.random.default_rng(0)
    batch_data = {
        "image": jnp.asarray(rng.standard_normal((batch, 32, 32, 3), np.float32)),
        "label": jnp.asarray(rng.integers(0, 10, batch).astype(np.int32)),
    }
    t0 = time.time()
    state = trainer.init(jax.random.PRNGKey(0), batch_data["image"][:2])  # un-jitted: fast
    jax.block_until_ready(state)
    init_s = time.time() - t0
    # Mid-training: drop-path at half its final probability.
    state = state.replace(step=jnp.asarray(epochs // 2 * steps_per_epoch, jnp.int32))
    step = jax.jit(trainer.step, donate_argnums=0, compiler_options=runtime.xla_options)
    t0 = time.time()
    compiled = step.lower(state, batch_data, jax.random.PRNGKey(1)).compile()
    compile_s = time.time() - t0
    flops = compiled_flops(compiled)
    for i in range(max(1, FLAGS.warmup)):
        state, m = compiled(state, batch_data, jax.random.PRNGKey(100 + i))
        jax.block_until_ready(m)
    walls, cpus, faults = [], [], []
    for i in range(FLAGS.steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = compiled(state, batch_data, jax.random.PRNGKey(3 + i))
        jax.block_until_ready(m)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    if not np.isfinite(float(m["train_loss"])):
        raise FloatingPointError("the benchmark's loss is not finite")
    device = jax.devices()[0]
    peak, peak_kind = _peak_mem_mb(device)
    step_s = float(np.median(walls))
    return {
        "batch": batch,
        "images_per_s": round(batch / step_s, 2),
        "step_s_median": round(step_s, 4),
        "compile_s": round(compile_s, 1),
        "peak_mem_mb": round(peak, 1),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "peak_mem_kind": peak_kind,
        "compute_dtype": FLAGS.compute_dtype,
        **flops_fields(flops, step_s, FLAGS.peak_tflops),
        "cpu_s_median": round(float(np.median(cpus)), 3),
        "page_faults_per_step": int(np.median(faults)),
        "malloc": jnas.runtime.malloc_status(),
        "runtime": runtime.record(),  # native kernels and XLA options (JNAS_NATIVE... override)
        "init_s": round(init_s, 1),
        "step_s_all": [round(w, 4) for w in walls],
        "genotype": FLAGS.genotype,
        "C": FLAGS.C,
        "layers": FLAGS.layers,
        "auxiliary": FLAGS.auxiliary,
        "scan_cells": FLAGS.scan_cells,
        "warmup": FLAGS.warmup,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    jnas.runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    if FLAGS.compilation_cache:
        setup_jax(FLAGS.compilation_cache)
    rows = []
    print(
        f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}",
        flush=True,
    )
    for b in FLAGS.batch:
        r = bench(int(b))
        rows.append(r)
        print(
            f"batch {r['batch']:>4}: {r['images_per_s']:8.1f} images/s, step "
            f"{r['step_s_median']:.3f} s (cpu {r['cpu_s_median']:.2f} s), compile "
            f"{r['compile_s']:.1f} s, peak memory {r['peak_mem_mb']:.0f} MB "
            f"({r['peak_mem_kind']}); {r['page_faults_per_step']} page faults per step, "
            f"malloc settings {r['malloc']}; {r['compute_dtype']}{describe(r)}",
            flush=True,
        )
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    jnas.runtime.relaunch()  # jnas's malloc settings from the start (JNAS_MALLOC=0: leave it)
    sys.exit(app.run(main))
