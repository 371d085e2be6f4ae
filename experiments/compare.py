r"""Compare the gradient strategies (DARTS, GDAS, PC-DARTS, P-DARTS, ...) and ENAS (micro) on
one budget, with one command.

  python -m experiments.compare --workdir=runs/compare [--methods=darts,gdas --epochs=6 ...]

The methods are the registered gradient and shared-weight strategies that name a
Fashion-MNIST config (``jnas.strategies.oneshot.GradientStrategy.configs["fashion_mnist"]``,
``jnas.strategies.enas.SharedWeightStrategy.configs``: ENAS's is its micro space); a new
strategy module with such a config takes part without an edit here. Every method searches
Fashion-MNIST with its own recipe on the same budget: the same images, batch size, seed and
total search epochs, put into its config by the strategy itself
(``GradientStrategy.apply_budget``: P-DARTS splits the epochs over its three stages, the
warm-ups of PC-DARTS and P-DARTS are scaled to the budget; ENAS's supergraph gets the cells and
channels, its controller phases come on top of the epochs' shared-weight steps). Each search
runs in its own process through ``jnas.runner.run_search``, so its peak memory is its own.
The derived cell is then retrained from scratch the same way for every method
(``jnas.runner.train.train``, one evaluation config) and tested.

The workdir gets one directory per method (the search's usual workdir, ``retrain/`` inside
it) and the table ``comparison.md`` (and ``comparison.json``): search wall time, of which
compilation (the first step of every stage: tracing, compiling and running it), peak
resident memory of the search process, XLA's buffer size of the compiled search step (the
largest stage), test accuracy of the retrained cell, and the skip connections in the normal
cell. Rerunning the command resumes:
finished methods are kept, unfinished ones resume from their checkpoints.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import flags, logging

from jnas import cli, runtime
from jnas.errors import EXIT_BUG, ConfigError, JnasError


def _write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON atomically: a rerun after a kill reads the old file or the new."""
    from jnas.runner.writers import write_text

    write_text(path, json.dumps(obj, indent=2))


def _strategy(name: str):
    """The registered gradient or shared-weight (ENAS) strategy ``name``."""
    from jnas.strategies.base import kind_of
    from jnas.strategies.enas import shared_strategy
    from jnas.strategies.oneshot import gradient_strategy

    return shared_strategy(name) if kind_of(name) == "shared" else gradient_strategy(name)


def methods() -> tuple[str, ...]:
    """The registered gradient and shared-weight (ENAS) strategies with a Fashion-MNIST config."""
    from jnas.strategies.base import STRATEGIES

    names = STRATEGIES.names(kind="gradient") + STRATEGIES.names(kind="shared")
    return tuple(name for name in names if "fashion_mnist" in _strategy(name).configs)


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where the runs and the table go.")
flags.DEFINE_list("methods", None, "Methods to compare (default: every registered one).")
flags.DEFINE_integer("epochs", 6, "Search epochs per method (P-DARTS: in all, over 3 stages).")
flags.DEFINE_integer("limit", 10_000, "Training images used by the search (halved: train/val).")
flags.DEFINE_integer("batch_size", 64, "Search batch size.")
flags.DEFINE_integer("C", 8, "Initial channels of the supernets.")
flags.DEFINE_integer("layers", 5, "Cells of the supernets (P-DARTS: 3, 4, 6 over its stages).")
flags.DEFINE_integer("retrain_epochs", 1, "Epochs of the retraining.")
flags.DEFINE_integer("retrain_limit", 0, "Training images of the retraining (0: all).")
flags.DEFINE_integer("retrain_test_limit", 0, "Test images of the retraining (0: all 10,000).")
flags.DEFINE_bool("step_memory", True, "Also compile each search step to read its XLA memory.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX directory (default: the usual places).")
flags.DEFINE_string("child", None, "Internal: run this one method in this process.")
flags.mark_flags_as_required(["workdir"])


def search_config(method: str):
    """The method's Fashion-MNIST config on the shared budget."""
    import importlib

    strategy = _strategy(method)
    module = strategy.configs["fashion_mnist"]
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    config.seed = 0
    config.data.limit = FLAGS.limit
    if FLAGS.data_dir:
        config.data.data_dir = FLAGS.data_dir
    config.search.batch_size = FLAGS.batch_size
    # the supernet's channels; a shared-weight space holds its own (ENAS micro: space.C)
    (config.model if "model" in config else config.space).C = FLAGS.C
    config.retrain = {"enabled": False}  # retrained below, the same way for all
    strategy.apply_budget(config, epochs=FLAGS.epochs, layers=FLAGS.layers)
    return config


def retrain_config():
    """One evaluation config for every derived cell: the quickstart's retraining.

    A 5-cell, C=12 evaluation network trained from scratch with SGD (cosine lr from 0.1,
    batch 128, no augmentation) for ``--retrain_epochs`` on ``--retrain_limit`` images.
    """
    from experiments.configs import darts_fashion_mnist

    config = darts_fashion_mnist.retrain_config()
    config.enabled = False
    config.seed = 0
    config.data.limit = FLAGS.retrain_limit
    config.data.test_limit = FLAGS.retrain_test_limit
    if FLAGS.data_dir:
        config.data.data_dir = FLAGS.data_dir
    config.train.epochs = FLAGS.retrain_epochs
    config.checkpoint_every_steps = 200
    return config


def step_memory_mib(method: str, config, workdir: str, image_shape) -> list[float]:
    """XLA's buffers (arguments + temporaries) of each stage's compiled search step."""
    import jax
    import jax.numpy as jnp

    from jnas.runner import use_runtime

    strategy = _strategy(config.strategy)
    stages = strategy.stage_configs(config)
    carries = {}
    if os.path.exists(os.path.join(workdir, "stages.json")):
        with open(os.path.join(workdir, "stages.json")) as f:
            carries = json.load(f)
    out = []
    b = config.search.batch_size
    batch = {
        "image": jax.ShapeDtypeStruct((b, *image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }
    for s, cfg in enumerate(stages):
        searcher = strategy(cfg, num_classes=10, steps_per_epoch=1, carry=carries.get(str(s)))
        sample = jnp.zeros((2, *image_shape))
        state = jax.eval_shape(searcher.init, jax.random.PRNGKey(0), sample)
        batches = (batch,) if strategy.KIND == "shared" else (batch, batch)  # ENAS: train only
        with use_runtime(cfg) as (_, switches):  # the options the search compiled with
            shared = strategy.KIND == "shared"  # ENAS's runner: the general options
            options = switches.xla_options if shared else switches.search_xla_options
            step = jax.jit(searcher.step, donate_argnums=0, compiler_options=options)
            mem = step.lower(state, *batches).compile().memory_analysis()
        out.append((mem.temp_size_in_bytes + mem.argument_size_in_bytes) / 2**20)
    return out


def run_method(method: str) -> dict:
    """Search, measure and retrain one method (in a process of its own).

    The search's measurements are saved (``search.json``) as soon as it ends, so that a rerun
    after an interruption later on keeps them; a search that itself resumed from a
    checkpoint is marked ``resumed`` (its time and memory cover only the resumed part).
    """
    from jnas.runner import run_search, setup_jax
    from jnas.runner import search as search_lib
    from jnas.spaces.genotype import Genotype

    setup_jax()
    workdir = os.path.join(FLAGS.workdir, method)
    config = search_config(method)
    measured = os.path.join(workdir, "search.json")
    if os.path.exists(measured):
        with open(measured) as f:
            result = json.load(f)
    else:
        resumed = os.path.isdir(os.path.join(workdir, "checkpoints"))
        t0 = time.time()
        summary = run_search(config, workdir)  # the host loop of the strategy's kind
        result = {
            "method": _strategy(method).title,
            "search_s": round(time.time() - t0, 1),
            "compile_s": summary.get("compile_s"),
            "steps": summary["steps"],
            # Linux reports kilobytes: the search alone, before any other compilation here.
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "resumed": resumed,
            "genotype": summary["genotype"],
        }
        _write_json(measured, result)
    genotype = Genotype.parse(result["genotype"])
    result["skips_normal"] = sum(op == "skip_connect" for op, _ in genotype.normal)
    if FLAGS.step_memory:
        _, (tx, _), _ = search_lib.load_search_data(config)
        mem = step_memory_mib(method, config, workdir, tuple(tx.shape[1:]))
        result["step_memory_mib"] = round(max(mem), 1)
        result["step_memory_per_stage_mib"] = [round(m, 1) for m in mem]
    try:
        from jnas.runner.train import train
    except ImportError as e:  # the retraining loop is optional for the rest of the table
        logging.warning("no retraining (%s)", e)
        result["test_acc"] = None
    else:
        t1 = time.time()
        retrained = train(retrain_config(), os.path.join(workdir, "retrain"), genotype=genotype)
        result.update(test_acc=retrained.get("test_acc"), retrain_s=round(time.time() - t1, 1))
        result["params"] = retrained.get("params")
    return result


def _fmt(v, pattern="{:.1f}"):
    return "n/a" if v is None else pattern.format(v)


def table(results: list[dict]) -> str:
    """The comparison as Markdown."""
    lines = [
        "| method | search (s) | of which compile (s) | peak RSS (MiB) | step memory, XLA "
        "(MiB) | retrained test acc. | skip-connections (normal) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = r["method"] + (" (resumed*)" if r.get("resumed") else "")
        lines.append(
            f"| {name} | {_fmt(r['search_s'])} | {_fmt(r.get('compile_s'))} | "
            f"{_fmt(r['peak_rss_mib'], '{:.0f}')} | {_fmt(r.get('step_memory_mib'))} | "
            f"{_fmt(r.get('test_acc'), '{:.4f}')} | {r['skips_normal']} |"
        )
    lines.append("")
    if any(r.get("resumed") for r in results):
        lines += ["*: the search resumed from a checkpoint; time and memory cover that part.", ""]
    lines += [f"- {r['method']}: `{r['genotype']}`" for r in results]
    return "\n".join(lines) + "\n"


class _MethodFailed(JnasError):
    """A method's process failed; it exits with the child's status (1 for a bug)."""

    def __init__(self, method: str, status: int):
        super().__init__(
            f"the run of {method!r} failed with exit status {status} (its error is printed "
            "above); rerun the command to resume the methods"
        )
        self.exit_status = status if status > 0 else EXIT_BUG


def main(argv):
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    if len(argv) > 1:
        raise ConfigError(cli.unexpected_arguments(argv))
    logging.set_verbosity(logging.WARNING)
    known = methods()
    chosen = FLAGS.methods or list(known)
    unknown = set(chosen) - set(known)
    if unknown or (FLAGS.child and FLAGS.child not in known):
        raise ConfigError(
            f"unknown method(s) {sorted(unknown or {FLAGS.child})}; choose from {', '.join(known)}"
        )
    os.makedirs(FLAGS.workdir, exist_ok=True)
    if FLAGS.child:
        result = run_method(FLAGS.child)
        _write_json(os.path.join(FLAGS.workdir, FLAGS.child, "compare.json"), result)
        return
    results = []
    for method in chosen:
        path = os.path.join(FLAGS.workdir, method, "compare.json")
        if not os.path.exists(path):
            print(f"== {method}", flush=True)
            cmd = [sys.executable, "-m", "experiments.compare", f"--child={method}"]
            cmd += [a for a in sys.argv[1:] if not a.startswith("--methods")]
            status = subprocess.run(cmd).returncode
            if status:  # the child printed its error (or traceback) already
                raise _MethodFailed(method, status)
        with open(path) as f:
            results.append(json.load(f))
    text = table(results)
    with open(os.path.join(FLAGS.workdir, "comparison.md"), "w") as f:
        f.write(text)
    with open(os.path.join(FLAGS.workdir, "comparison.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(text)


if __name__ == "__main__":
    cli.run(main)
