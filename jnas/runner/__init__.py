"""Host loops (search, retraining) and their helpers: checkpoints, writers, progress.

* :func:`run_search` runs the search a config describes, in the host loop of its
  strategy's kind (:func:`jnas.strategies.base.kind_of`): ``"gradient"`` strategies in
  :func:`jnas.runner.search.search`, ``"discrete"`` ones in
  :func:`jnas.runner.discrete.search`, ``"shared"`` ones (ENAS) in
  :func:`jnas.runner.enas.search`, ``"morphism"`` ones (Auto-Keras) in
  :func:`jnas.runner.morphism.search`. :func:`jnas.runner.train.train` retrains a genotype.
* :func:`runtime_config` fills a config's ``runtime`` section (the switches of
  :mod:`jnas.ops.settings`: native kernels, XLA options) with its defaults, and
  :func:`use_runtime` puts it in force for a run and records what it resolved to.
* :func:`setup_jax` turns on JAX's persistent compilation cache (the entry points call it).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import os
from collections.abc import Iterator

import ml_collections

# The host loop of each kind of strategy (jnas.strategies.base.KINDS): "module:function".
HOST_LOOPS = {
    "gradient": "jnas.runner.search:search",
    "discrete": "jnas.runner.discrete:search",
    "shared": "jnas.runner.enas:search",
    "morphism": "jnas.runner.morphism:search",
}


def setup_jax(cache_dir: str | None = None) -> None:
    """Turn on JAX's persistent compilation cache, so reruns and resumes skip compilation.

    Args:
      cache_dir: the cache directory; default ``$JNAS_COMPILATION_CACHE`` or
        ``~/.cache/jnas/xla``. The empty string turns the cache off.
    """
    import jax

    if cache_dir is None:
        cache_dir = os.environ.get(
            "JNAS_COMPILATION_CACHE", os.path.join(os.path.expanduser("~"), ".cache/jnas/xla")
        )
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def host_loop(config: ml_collections.ConfigDict):
    """The ``search(config, workdir)`` function of the host loop for ``config.strategy``."""
    from jnas.strategies.base import kind_of

    kind = kind_of(config.strategy)
    if kind not in HOST_LOOPS:
        raise ValueError(
            f"strategy {config.strategy!r} is of kind {kind!r}; the host loops run "
            f"{', '.join(sorted(HOST_LOOPS))}"
        )
    module, _, name = HOST_LOOPS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def run_search(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict:
    """Run (or resume) the search of ``config`` in ``workdir``; returns the host loop's summary.

    A gradient search's summary holds ``"genotype"`` (text); a discrete search's
    ``"best_arch"`` and ``"best_reward"``.

    The whole config is validated first (:func:`jnas.validate.check_search_config`), then
    compared with the workdir's ``config.json`` (:func:`jnas.runner.workdir.check_workdir`;
    ``allow_config_change=True`` accepts a difference that changes the results), before the
    workdir is touched or anything compiles.

    Raises:
      jnas.errors.ConfigError: the config is not a valid search config (every problem named).
      jnas.errors.WorkdirConfigError: the workdir belongs to another config.
    """
    from jnas.validate import check_search_config

    check_search_config(config)
    return host_loop(config)(config, workdir, allow_config_change=allow_config_change)


def runtime_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``runtime`` section has every switch of
    :mod:`jnas.ops.settings` (the defaults, ``"auto"``, where it lacks them), so that no
    config file needs the section."""
    from jnas.ops import settings

    config = copy.deepcopy(config)
    with config.unlocked():
        if "runtime" not in config or config.runtime is None:
            config.runtime = ml_collections.ConfigDict()
        for name, value in settings.DEFAULTS.items():
            if name not in config.runtime:
                config.runtime[name] = value
    return config


@contextlib.contextmanager
def use_runtime(config: ml_collections.ConfigDict) -> Iterator[tuple]:
    """Put ``config.runtime`` in force for a run (environment variables override it).

    Yields ``(config, resolved)``: a copy of ``config`` whose ``runtime`` section is what
    ``config.json`` should record (:meth:`jnas.ops.settings.Resolved.record`: the switches,
    what each resolved to and where it came from), and the
    :class:`jnas.ops.settings.Resolved` (``resolved.xla_options`` for
    :class:`jnas.runner.parallel.Parallel`; ``resolved.search_xla_options`` in the one-shot
    search runner). Raises
    :class:`jnas.ops.settings.RuntimeSettingsError` on a bad switch, before anything runs.
    The previous switches return on exit. Every host loop runs inside one::

        def search(config, workdir):
            with use_runtime(config) as (config, runtime):
                parallel = Parallel(config.parallel, xla_options=runtime.xla_options)
                ...
    """
    from jnas.ops import settings

    section = config.get("runtime")  # switches it lacks resolve (and are recorded) as defaults
    config = runtime_config(config)
    with settings.use(section) as resolved:
        with config.unlocked():
            config.runtime = ml_collections.ConfigDict(resolved.record())
        yield config, resolved
