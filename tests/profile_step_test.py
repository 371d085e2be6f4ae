"""benchmarks/profile_step.py's summary of a traced step: every matched microsecond is in
each table once (the tables are partitions of the same events), events are matched to the
module's instructions by name, and instructions to the Flax modules that emitted them."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks import profile_step


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64, name="first")(x))
        return nn.Dense(8, name="second")(x)


def test_summary_partitions_the_traced_op_time(tmp_path):
    net = _Net()
    x = jnp.ones((32, 16))
    params = net.init(jax.random.PRNGKey(0), x)

    def loss(p):
        return jnp.sum(net.apply(p, x) ** 2)

    step = jax.jit(jax.grad(loss)).lower(params).compile()
    step(params)
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        for _ in range(2):
            jax.block_until_ready(step(params))
    index = profile_step.hlo_index(step.as_text())
    assert index and all(opcode for opcode, _ in index.values())
    events = profile_step._trace_events(str(tmp_path))
    summary = profile_step.summarize(events, index, steps=2, depth=2)
    matched = summary["matched_us_per_step"]
    assert matched > 0
    for key in ("by_kind", "by_module"):
        total = sum(t for _, t in summary[key])
        assert abs(total - matched) <= 0.1 * len(summary[key]), key  # rounding per row
    modules = {m for m, _ in summary["by_module"]}
    assert {"first", "second"} & modules, modules
    assert summary["by_op"][0][2] >= 1  # calls per step
    text = profile_step.report(
        dict(
            summary,
            step="train",
            method=None,
            batch=32,
            layers=0,
            compute_dtype="float32",
            backend="cpu",
            device="cpu",
            compile_s=0.0,
            wall_us_per_step=1.0,
        )
    )
    assert "ms per step by Flax module" in text
    assert os.listdir(tmp_path)


def test_a_device_trace_counts_the_kernels_not_the_host_launches():
    index = {"fusion.1": ("fusion", "jit(step)/jvp(Net)/cell_0/conv/mul")}
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "X", "pid": 1, "name": "fusion.1", "dur": 5.0},  # the launch
        {"ph": "X", "pid": 2, "name": "loop_fusion", "dur": 40.0, "args": {"hlo_op": "fusion.1"}},
    ]
    summary = profile_step.summarize(events, index, steps=2, depth=2)
    assert summary["matched_us_per_step"] == 20.0
    assert summary["by_module"] == [["cell_0/conv", 20.0]]


def test_module_path_drops_transformations():
    name = (
        "jit(step)/while/body/closed_call/jvp(SearchNetwork)/cell_1/from_0_e9/SampledMixedOp_0/"
        "cond/branch_6_fun/ops_dil_conv_3x3/BatchNorm_0/add"
    )
    assert profile_step.module_path(name, 3) == "cell_1/from_0_e9/SampledMixedOp_0"
    assert (
        profile_step.module_path(name, 9)
        == "cell_1/from_0_e9/SampledMixedOp_0/ops_dil_conv_3x3/BatchNorm_0"
    )
    assert profile_step.module_path("jit(step)/add", 3) == "(outside modules)"
