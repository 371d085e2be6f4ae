"""Which program a run compiles on the CPU backend: native kernels and XLA options.

Five switches, each ``"auto"``, ``True`` or ``False``; a run's config holds them as
``config.runtime`` (filled with :data:`DEFAULTS` by :func:`jnas.runner.runtime_config` where a
config lacks the section) and writes what they resolved to into ``config.json``:

* ``native``: the native CPU kernels of :mod:`jnas.ops.native` (depthwise convolutions,
  and the two below). ``"auto"``: used on the CPU backend where they build; ``True``: the
  same, but a failed build raises :class:`RuntimeSettingsError`; ``False``: XLA's
  formulations everywhere.
* ``native_bn``: batch norm on the native kernels (:mod:`jnas.ops.batchnorm`); ``False``:
  Flax's batch norm. ``"auto"`` and ``True`` follow ``native`` (``True`` raises where the
  kernels are off or unavailable).
* ``native_pw``: the native weight gradient of 1x1 convolutions (:mod:`jnas.ops.pointwise`).
* ``xla_cpu_options``: the XLA CPU compiler options of :mod:`jnas.ops.xla_cpu` (with one
  more for the one-shot supernets' steps). ``"auto"``: on the CPU backend where the
  installed XLA knows them; ``True`` raises where it does not.
* ``xla_gpu_options``: the XLA GPU compiler options of :mod:`jnas.ops.xla_gpu` (Triton GEMMs
  off). ``"auto"``: on the GPU backend where the installed XLA knows them; ``True`` raises
  elsewhere; ``False``: XLA's defaults.

A config file may hold the section (:func:`config_section`), so that a command line sets a
switch: ``--config.runtime.native_bn=false``.

The environment variables ``JNAS_NATIVE``, ``JNAS_NATIVE_BN``, ``JNAS_NATIVE_PW``,
``JNAS_XLA_CPU_OPTIONS`` and ``JNAS_XLA_GPU_OPTIONS`` override the config (``0``: ``False``,
``1``: ``True``, ``auto``). They are also what applies when no run has set the switches (a
library user tracing a network directly). The ops read the switches when a network is traced,
so a run sets them before it traces anything::

    with settings.use(config.runtime) as resolved:
        step = jax.jit(fn, compiler_options=resolved.xla_options)
        ...
        write_json("config.json", {..., "runtime": resolved.record()})

JAX caches traces by function: :func:`use` clears JAX's caches whenever the switches
change, so a function traced under other switches is traced again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

from jnas.errors import JnasError

__all__ = [
    "DEFAULTS",
    "config_section",
    "ENV_VARS",
    "FIELDS",
    "Requested",
    "Resolved",
    "RuntimeSettingsError",
    "requested",
    "resolve",
    "use",
]

FIELDS = ("native", "native_bn", "native_pw", "xla_cpu_options", "xla_gpu_options")
DEFAULTS: dict[str, Any] = {name: "auto" for name in FIELDS}
ENV_VARS = {
    "native": "JNAS_NATIVE",
    "native_bn": "JNAS_NATIVE_BN",
    "native_pw": "JNAS_NATIVE_PW",
    "xla_cpu_options": "JNAS_XLA_CPU_OPTIONS",
    "xla_gpu_options": "JNAS_XLA_GPU_OPTIONS",
}
_ENV_VALUES = {"0": False, "1": True, "auto": "auto"}
# Keys of a recorded section (config.json) that are not switches; read back, they are ignored.
_RECORD_KEYS = ("resolved", "source")


def config_section():
    """The ``config.runtime`` section of a config file, with the defaults: an
    ``ml_collections.ConfigDict`` of strings, so that ``--config.runtime.native_bn=false``
    overrides it (``"true"``, ``"false"``, ``"0"``, ``"1"`` are read as booleans)."""
    import ml_collections

    return ml_collections.ConfigDict(dict(DEFAULTS))


class RuntimeSettingsError(ValueError, JnasError):
    """A ``config.runtime`` switch (or its environment variable) is invalid or cannot hold."""


@dataclasses.dataclass(frozen=True)
class Requested:
    """The five switches as asked for (``"auto"``, True or False) and where each came from
    (``"default"``, ``"config"`` or ``"JNAS_...=<value>"``)."""

    native: bool | str = "auto"
    native_bn: bool | str = "auto"
    native_pw: bool | str = "auto"
    xla_cpu_options: bool | str = "auto"
    xla_gpu_options: bool | str = "auto"
    source: tuple[tuple[str, str], ...] = tuple((name, "default") for name in FIELDS)

    def values(self) -> tuple:
        return tuple(getattr(self, name) for name in FIELDS)

    def where(self, name: str) -> str:
        """Where switch ``name`` came from, as a user would write it."""
        src = dict(self.source)[name]
        return f"config.runtime.{name}={getattr(self, name)!r}" if src == "config" else src


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What the switches resolved to on this machine.

    Attributes:
      requested: the switches as asked for.
      native, native_bn, native_pw, xla_cpu_options, xla_gpu_options: whether each is in use
        (native kernels apply on the CPU backend to float32 only).
      xla_options: the compiler options for ``jax.jit`` (None: XLA's defaults).
      search_xla_options: those for the one-shot searches' supernet steps
        (:func:`jnas.ops.xla_cpu.search_options` on the CPU, else ``xla_options``).
      why: name -> why an ``"auto"`` switch resolved to False (only those).
    """

    requested: Requested
    native: bool
    native_bn: bool
    native_pw: bool
    xla_cpu_options: bool
    xla_gpu_options: bool
    xla_options: dict[str, Any] | None
    search_xla_options: dict[str, Any] | None = None
    why: tuple[tuple[str, str], ...] = ()

    def record(self) -> dict:
        """The section for ``config.json``: the switches as asked for (environment
        overrides included, so the section read back asks for the same program), what each
        resolved to, and where each came from."""
        out: dict[str, Any] = {name: getattr(self.requested, name) for name in FIELDS}
        out["resolved"] = {name: getattr(self, name) for name in FIELDS}
        why = dict(self.why)
        out["source"] = {
            name: dict(self.requested.source)[name] + (f" ({why[name]})" if name in why else "")
            for name in FIELDS
        }
        return out


_TEXT_VALUES = {"auto": "auto", "true": True, "false": False, "1": True, "0": False}


def _check_value(name: str, value: Any, where: str) -> bool | str:
    if value is True or value is False:
        return value
    if isinstance(value, str) and value.strip().lower() in _TEXT_VALUES:  # a command-line flag
        return _TEXT_VALUES[value.strip().lower()]
    raise RuntimeSettingsError(f"{where}: {value!r} is not one of 'auto', True, False")


def _from_env(name: str) -> tuple[bool | str, str] | None:
    var = ENV_VARS[name]
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return None
    if raw.strip().lower() not in _ENV_VALUES:
        raise RuntimeSettingsError(
            f"{var}={raw!r}: expected one of {', '.join(map(repr, _ENV_VALUES))}"
        )
    return _ENV_VALUES[raw.strip().lower()], f"{var}={raw.strip()}"


def request(section: Mapping | None = None) -> Requested:
    """The switches of ``section`` (``config.runtime``, a mapping; None: the defaults) with
    the environment's overrides. Raises :class:`RuntimeSettingsError` on an unknown key or a
    bad value."""
    if hasattr(section, "to_dict"):  # an ml_collections.ConfigDict
        section = section.to_dict()
    section = dict(section or {})
    unknown = sorted(set(section) - set(FIELDS) - set(_RECORD_KEYS))
    if unknown:
        raise RuntimeSettingsError(
            f"unknown config.runtime key(s) {unknown}; known: {', '.join(FIELDS)}"
        )
    values, source = {}, []
    for name in FIELDS:
        env = _from_env(name)
        if env is not None:
            values[name], src = env
        elif name in section:
            values[name] = _check_value(name, section[name], f"config.runtime.{name}")
            src = "config"
        else:
            values[name], src = DEFAULTS[name], "default"
        source.append((name, src))
    return Requested(**values, source=tuple(source))


_applied: Requested | None = None


def requested() -> Requested:
    """The switches in force: those of the innermost :func:`use`, else the environment's
    over the defaults (read at each call)."""
    return _applied if _applied is not None else request(None)


def resolve(req: Requested) -> Resolved:
    """What ``req`` resolves to on this machine (builds the native kernels if asked for).

    Raises :class:`RuntimeSettingsError` where a switch set to True cannot hold.
    """
    import jax

    from jnas.ops import native as _native
    from jnas.ops import xla_cpu, xla_gpu

    cpu = jax.default_backend() == "cpu"
    why: dict[str, str] = {}

    def need(name: str, ok: bool, reason: str) -> bool:
        if getattr(req, name) is True and not ok:
            raise RuntimeSettingsError(f"{req.where(name)} cannot hold: {reason}")
        if getattr(req, name) == "auto" and not ok:
            why[name] = reason
        return ok

    if req.native is False:
        native = False
    else:
        built = cpu and _native.build()
        reason = f"backend is {jax.default_backend()}" if not cpu else str(_native._build_error)
        native = need("native", built, f"native kernels unavailable: {reason}")
    kernels_off = "native kernels off" if req.native is False else "native kernels unavailable"
    native_bn = req.native_bn is not False and need("native_bn", native, kernels_off)
    native_pw = req.native_pw is not False and need("native_pw", native, kernels_off)

    def compiler_options(name, backend, what, options_fn):
        """The options of switch ``name`` (XLA's for ``backend`` only), or None."""
        if getattr(req, name) is False:
            return None
        here = jax.default_backend() == backend
        options = options_fn() if here else None
        reason = "this XLA does not know them" if here else f"the backend is not {what}"
        need(name, options is not None, reason)
        return options

    options = compiler_options("xla_cpu_options", "cpu", "the CPU", xla_cpu.cpu_options)
    gpu_options = compiler_options("xla_gpu_options", "gpu", "a GPU", xla_gpu.gpu_options)
    return Resolved(
        requested=req,
        native=native,
        native_bn=native_bn,
        native_pw=native_pw,
        xla_cpu_options=options is not None,
        xla_gpu_options=gpu_options is not None,
        xla_options=options or gpu_options,
        search_xla_options=xla_cpu.search_options() if options else gpu_options,
        why=tuple(why.items()),
    )


def _set(req: Requested | None) -> None:
    global _applied
    before = requested().values()
    _applied = req
    if requested().values() != before:
        import jax

        jax.clear_caches()  # traces under the old switches must not be reused


@contextlib.contextmanager
def use(section: Mapping | None) -> Iterator[Resolved]:
    """Put the switches of ``section`` (``config.runtime``; environment variables override)
    in force for the block, and yield what they resolved to. The previous switches return on
    exit."""
    req = request(section)
    resolved = resolve(req)
    previous = _applied
    _set(req)
    try:
        yield resolved
    finally:
        _set(previous)
