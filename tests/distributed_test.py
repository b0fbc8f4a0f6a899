"""distributed: data-parallel fit and sharded sweeps on 4 CPU devices, and across 2 processes.

This process has one device, and the device count is fixed when JAX starts, so the
measurements run in a subprocess with ``--xla_force_host_platform_device_count=4``
(``distributed_checks.py``, run once) and the tests below assert on what it reports. The
references are unsharded runs of the same training in the same subprocess. A second test runs
the example script as 2 processes × 2 devices joined by ``jax.distributed`` (gloo collectives),
and checks that it gives what one process with 4 devices gave.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import bpjax as bp

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "distributed_fit.py"
TINY = ["--samples-per-device", "8", "--batch-per-device", "2", "--inputs", "3", "--hidden", "4",
        "--epochs", "2", "--models-per-device", "1", "--sweep-samples", "8"]  # as in the checks
F32, F64 = 1e-5, 1e-12  # relative tolerances: float32 rounding over a few steps; float64


def _env(devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    return env


@pytest.fixture(scope="module")
def checks():
    run = subprocess.run([sys.executable, str(HERE / "distributed_checks.py")], env=_env(4),
                         capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["device_count"] == 4
    return results


def result(checks, name):
    r = checks[name]
    assert "error" not in r, r.get("error")
    return r


def assert_replicated_on_the_given_mesh(r, axis_types=("AxisType.Explicit",)):
    assert r["spec"] == ["P()", "P()"]
    assert r["devices"] == [4, 4]
    assert r["shard_shapes"] == [[shape] * 4 for shape in r["weights_shapes"]]  # full copies
    assert tuple(r["mesh_axis_types"]) == axis_types  # the given mesh's, given back


def test_fit_on_4_devices_matches_one_device_in_float32(checks):
    first = result(checks, "fit_float32_adam_shuffled")  # B = 16, Adam, reshuffled each epoch
    for r in (first, first["resumed"]):  # and 4 more epochs from the results
        assert r["params"] < F32 and r["opt_state"] < F32 and r["losses"] < F32
        assert r["fields_equal"]
        assert_replicated_on_the_given_mesh(r)


def test_fit_on_4_devices_matches_one_device_in_float64_with_padding_and_patience(checks):
    r = result(checks, "fit_float64_padded_batches_validation_patience")
    assert r["params"] < F64 and r["losses"] < F64 and r["val_losses"] < F64
    assert r["fields_equal"]  # epochs run, best epoch, stopping flags
    assert_replicated_on_the_given_mesh(r)


def test_fit_on_4_devices_with_a_loss_labels_and_sample_weights(checks):
    r = result(checks, "fit_float64_softmax_weighted_labels")
    assert r["params"] < F64 and r["losses"] < F64 and r["val_losses"] < F64
    assert r["fields_equal"]
    assert_replicated_on_the_given_mesh(r)


def test_full_batch_on_a_2d_mesh_with_clamps_and_adamw(checks):
    r = result(checks, "fit_float64_full_batch_clamped_on_a_2d_mesh")
    assert r["params"] < F64 and r["opt_state"] < F64 and r["losses"] < F64
    assert r["fields_equal"] and r["clamped_bit_identical"]
    assert_replicated_on_the_given_mesh(r, ("AxisType.Explicit", "AxisType.Explicit"))


def test_algorithm1_on_a_data_axis_of_one_device_is_unchanged(checks):
    r = result(checks, "algorithm1_on_a_one_device_axis")
    assert r["params"] < F64 and r["losses"] < F64 and r["fields_equal"]


def test_data_is_split_along_the_samples_and_every_batch_over_the_devices(checks):
    r = result(checks, "placement_and_batches")
    for case in ("ordered", "shuffled"):  # N = 64, B = 16: 4 steps, 4 samples per device each
        c = r[case]
        assert c["X_spec"] == "P('data',)" and c["X_shards"] == [[16, 3]] * 4
        assert c["params_spec"] == "P()"
        assert c["batches_shape"] == [4, 16, 3]
        assert c["batches_spec"] == "P(None, 'data')"
        assert c["batches_shards"] == [[4, 4, 3]] * 4
    assert r["uneven"] == {"X_spec": "P()", "X_shards": [[50, 3]] * 4}  # 50 rows: replicated


def test_compiled_loop_all_reduces_the_gradient_of_each_devices_share_of_the_batch(checks):
    r = result(checks, "compiled_loop")
    ops = r["collectives"]
    # One all-reduce per step adds the devices' partial sums of G_B: (∂/∂W^1, ∂/∂w^1_0, ...),
    # each ∂/∂W^l as (δ^lᵀ φ_in) or its transpose (backward.outer_sum).
    grads = [c for c in ops if c["op"] == "all-reduce" and not c["entry"]
             and ("f32[3,8]" in c["shape"] or "f32[8,3]" in c["shape"])
             and ("f32[8,2]" in c["shape"] or "f32[2,8]" in c["shape"])]
    assert len(grads) == 1, ops
    assert not [c for c in ops if c["op"] == "all-gather"], ops  # no device sees the whole batch
    # The steps read X in slices of B/n = 4 samples per device, never the whole B = 16.
    assert r["x_batch_slices"] == [4]


def test_sweep_splits_the_models_over_the_devices(checks):
    r = result(checks, "sweep_algorithm1_float64")  # M = 8 models of Algorithm 1, 4 devices
    assert r["params"] < F64 and r["losses"] < F64 and r["fields_equal"]
    assert r["spec"] == ["P('models',)", "P('models',)"]
    assert r["epochs_run_spec"] == "P('models',)"
    assert r["shard_shapes"] == [[[2, 3, 5]] * 4, [[2, 6, 1]] * 4]  # M/n = 2 models each
    assert r["mesh_axis_types"] == ["AxisType.Auto"]


ERRORS = [
    ("batch_not_multiple", "ValueError",
     r"batch_size = 6 must be a multiple of the 4 devices of mesh axis 'data'"),
    ("algorithm1_on_4_devices", "ValueError",
     r"batch_size=1 is Algorithm 1, one sample after the other: it cannot be split over the 4 "
     r"devices of mesh axis 'data'.*bp.sweep\(\.\.\., mesh=mesh"),
    ("full_batch_not_multiple", "ValueError",
     r"the full batch N = 50 \(batch_size=None\) must be a multiple of the 4 devices"),
    ("fit_axis_missing", "ValueError",
     r"mesh has no axis 'data' \(its axes: \('x',\)\); name one of them with data_axis="),
    ("fit_axis_not_str", "TypeError", r"data_axis must be the name of a mesh axis \(a str\), got 0"),
    ("fit_not_a_mesh", "TypeError", r"mesh must be a jax.sharding.Mesh.*got list"),
    ("fit_under_jit", "TypeError", r"call it outside jax.jit and jax.vmap"),
    ("sweep_models_not_multiple", "ValueError",
     r"the M = 6 models must be a multiple of the 4 devices of mesh axis 'models'"),
    ("sweep_axis_missing", "ValueError",
     r"mesh has no axis 'models' \(its axes: \('data',\)\); name one of them with model_axis="),
]


@pytest.mark.parametrize("case, error, message", ERRORS)
def test_bad_input_on_4_devices(checks, case, error, message):
    got = result(checks, "errors")[case]
    assert got is not None, f"{case}: no error"
    assert got[0] == error and re.search(message, got[1]), got


# --- in this process (one device): what needs no second device ------------------------------

NET = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
X1 = np.linspace(-1, 1, 8).reshape(4, 2)
Y1 = np.ones((4, 1))


@pytest.mark.parametrize("mesh, axis, error, message", [
    (lambda: jax.make_mesh((1,), ("x",)), "data", ValueError,
     r"mesh has no axis 'data' \(its axes: \('x',\)\)"),
    (lambda: "cpu", "data", TypeError, r"mesh must be a jax.sharding.Mesh.*got str"),
])
def test_bad_mesh_on_one_device(mesh, axis, error, message):
    params = bp.init(NET, jax.random.key(0))
    with pytest.raises(error, match=message):
        bp.fit(NET, params, X1, Y1, learning_rate=0.1, epochs=1, batch_size=2, mesh=mesh(),
               data_axis=axis)


# --- the example script ----------------------------------------------------------------------


def test_example_runs_on_4_devices(checks):
    r = result(checks, "example")
    assert (r["devices"], r["processes"], r["samples"], r["batch_size"]) == (4, 1, 32, 8)
    assert r["params_sharding"] in ("P()", "PartitionSpec()")  # the repr of JAX >= 0.10, < 0.10
    assert len(r["fit_losses"]) == 2 and np.all(np.isfinite(r["fit_losses"]))
    assert r["models"] == 4 and r["sweep_shard_rows"] == [1, 1, 1, 1]
    assert np.all(np.isfinite(r["sweep_final_losses"]))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_example_on_2_processes_gives_what_1_process_gave(checks, tmp_path):
    """2 processes × 2 devices, one mesh of 4 across them: the same numbers as 1 × 4."""
    one = result(checks, "example")
    out = tmp_path / "two.json"
    common = [sys.executable, str(EXAMPLE), *TINY, "--coordinator", f"localhost:{_free_port()}",
              "--num-processes", "2", "--cpu-collectives"]
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    procs = [subprocess.Popen([*common, "--process-id", str(i)]
                              + (["--json", str(out)] if i == 0 else []),
                              env=_env(2), stdout=log.open("w"), stderr=subprocess.STDOUT,
                              cwd=HERE.parent) for i, log in enumerate(logs)]
    deadline = time.monotonic() + 600
    try:  # if one process fails, the other would wait for it: stop at the first failure
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(
        log.read_text()[-3000:] for log in logs)
    two = json.loads(out.read_text())
    assert (two["processes"], two["devices"]) == (2, 4)
    np.testing.assert_allclose(two["fit_losses"], one["fit_losses"], rtol=F32)
    np.testing.assert_allclose(two["sweep_final_losses"], one["sweep_final_losses"], rtol=F32)
    assert two["sweep_shard_rows"] == [1, 1]  # process 0 holds the models of its 2 devices
