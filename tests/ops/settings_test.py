"""The runtime switches (jnas.ops.settings, jnas.runner.use_runtime): config values, the
environment's overrides, named errors, the record for config.json, and the traced program."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jnas.ops import native, settings, xla_cpu
from jnas.ops.batchnorm import BatchNorm
from jnas.runner import runtime_config, use_runtime


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in settings.ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)


def test_config_values_env_overrides_and_sources(monkeypatch):
    req = settings.request({"native_bn": False, "xla_cpu_options": True})
    assert req.values() == ("auto", False, "auto", True, "auto")
    assert dict(req.source) == {
        "native": "default",
        "native_bn": "config",
        "native_pw": "default",
        "xla_cpu_options": "config",
        "xla_gpu_options": "default",
    }
    monkeypatch.setenv("JNAS_NATIVE_BN", "1")
    monkeypatch.setenv("JNAS_XLA_CPU_OPTIONS", "0")
    req = settings.request({"native_bn": False, "xla_cpu_options": True})
    assert req.native_bn is True and req.xla_cpu_options is False
    assert dict(req.source)["native_bn"] == "JNAS_NATIVE_BN=1"
    assert settings.request(None).values() == ("auto", True, "auto", False, "auto")


@pytest.mark.parametrize(
    "section, env, match",
    [
        ({"native": "yes"}, {}, r"config.runtime.native: 'yes' is not one of"),
        ({"native": 1}, {}, r"config.runtime.native: 1 is not one of"),
        ({"native_kernels": False}, {}, r"unknown config.runtime key\(s\) \['native_kernels'\]"),
        ({}, {"JNAS_NATIVE_PW": "off"}, r"JNAS_NATIVE_PW='off': expected one of"),
    ],
)
def test_bad_switches_are_named(monkeypatch, section, env, match):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(settings.RuntimeSettingsError, match=match):
        settings.request(section)
    config = ml_collections.ConfigDict({"runtime": section})
    with pytest.raises(settings.RuntimeSettingsError, match=match):
        with use_runtime(config):
            pass


def test_gpu_options_apply_on_the_gpu_backend_only(monkeypatch):
    """On a GPU backend the steps compile without Triton GEMMs (the known XLA crash) unless
    the switch is off; elsewhere "auto" leaves them out and True names why it cannot hold.
    The GPU is simulated by the backend's name: the options are checked against this XLA."""
    on_cpu = settings.resolve(settings.request({}))
    assert not on_cpu.xla_gpu_options
    assert dict(on_cpu.why)["xla_gpu_options"] == "the backend is not a GPU"
    with pytest.raises(settings.RuntimeSettingsError, match="xla_gpu_options=True cannot hold"):
        settings.resolve(settings.request({"xla_gpu_options": True}))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    on_gpu = settings.resolve(settings.request({}))
    assert on_gpu.xla_gpu_options and not on_gpu.xla_cpu_options and not on_gpu.native
    assert on_gpu.xla_options == {"xla_gpu_enable_triton_gemm": False}
    assert on_gpu.search_xla_options == on_gpu.xla_options  # LLVM's level is the CPU's
    assert on_gpu.record()["resolved"]["xla_gpu_options"] is True
    off = settings.resolve(settings.request({"xla_gpu_options": False}))
    assert off.xla_options is None
    monkeypatch.setenv("JNAS_XLA_GPU_OPTIONS", "0")
    assert settings.resolve(settings.request({})).xla_options is None


def test_search_steps_compile_with_llvm_o1_on_top_of_the_cpu_options():
    """The one-shot supernets' steps: the general CPU options and LLVM at -O1 (this XLA knows
    both); with the switch off, XLA's defaults for every step."""
    on = settings.resolve(settings.request({}))
    assert on.xla_options == xla_cpu.cpu_options() is not None
    assert on.search_xla_options == {**on.xla_options, "xla_backend_optimization_level": 1}
    off = settings.resolve(settings.request({"xla_cpu_options": False}))
    assert off.xla_options is None and off.search_xla_options is None


def test_a_config_file_section_takes_command_line_values():
    from experiments.configs import eval_tiny
    from jnas.config import with_overrides

    config = eval_tiny.get_config()
    assert config.runtime.to_dict() == settings.DEFAULTS
    config = with_overrides(config, {"runtime.native_bn": "false", "runtime.native_pw": "True"})
    req = settings.request(config.runtime)
    assert req.native_bn is False and req.native_pw is True and req.native == "auto"


def test_runtime_config_fills_defaults_without_touching_the_config():
    config = ml_collections.ConfigDict({"seed": 0})
    config.lock()
    filled = runtime_config(config)
    assert "runtime" not in config
    assert filled.runtime.to_dict() == settings.DEFAULTS
    config = ml_collections.ConfigDict({"runtime": {"native_pw": False}})
    assert runtime_config(config).runtime.to_dict() == {**settings.DEFAULTS, "native_pw": False}


def test_record_round_trips_and_switches_return_after_the_block(monkeypatch):
    config = ml_collections.ConfigDict({"runtime": {"native_bn": False}})
    with use_runtime(config) as (recorded, resolved):
        assert settings.requested().native_bn is False
        assert resolved.native_bn is False and resolved.native == native.available()
        assert (resolved.xla_options is not None) == (xla_cpu.compiler_options() is not None)
        record = recorded.runtime.to_dict()
    assert record["native_bn"] is False and record["resolved"]["native_bn"] is False
    assert record["source"]["native_bn"] == "config"
    assert settings.requested().native_bn == "auto"
    # config.json's section read back asks for the same program.
    assert settings.request(record).values() == settings.request({"native_bn": False}).values()


def test_switch_changes_are_traced_afresh():
    """JAX caches traces by function: a function traced with the native batch norm is traced
    again (without it) inside a block that turns it off, and with it again after."""
    bn = BatchNorm(use_running_average=False)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 8))
    variables = bn.init(jax.random.PRNGKey(1), x)

    @jax.jit
    def f(x):
        return bn.apply(variables, x, mutable=["batch_stats"])[0]

    def uses_native():
        return "jnas_bn_" in f.lower(x).as_text()

    on = native.available() and jax.default_backend() == "cpu"
    assert uses_native() == on
    with settings.use({"native_bn": False}):
        assert not uses_native()
        f(x).block_until_ready()
    assert uses_native() == on
    assert jnp.all(jnp.isfinite(f(x)))
