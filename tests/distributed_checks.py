"""Measurements on 4 CPU devices, for ``distributed_test.py``: prints one JSON object.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag
must be set before JAX starts, so the main test process, with its 1 device, cannot do this).
Each check returns the facts it measured (differences from an unsharded run, shardings,
shapes, error messages); the tests assert on them, so a failure there names the fact.
"""

import json
import os
import re
import sys
import time
import traceback
from functools import partial
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import distributed_fit  # noqa: E402


def _spec(spec) -> str:
    """A PartitionSpec as ``P(...)`` whatever the JAX version (before 0.10: ``PartitionSpec(...)``)."""
    return f"P{tuple(spec)!r}"


def example():
    """The example script, single process, tiny sizes (first: it calls jax.distributed)."""
    return distributed_fit.main(["--samples-per-device", "8", "--batch-per-device", "2",
                                 "--inputs", "3", "--hidden", "4", "--epochs", "2",
                                 "--models-per-device", "1", "--sweep-samples", "8"])


jax.config.update("jax_enable_x64", True)  # float64 for the tight comparisons

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

import bpjax as bp  # noqa: E402
from bpjax import arguments, distributed, minibatch, training  # noqa: E402
from bpjax import loop as fit_loop  # noqa: E402

NET = bp.Network(3, [bp.Layer(8, "tanh"), bp.Layer(2, "identity")])
SMALL = bp.Network(2, [bp.Layer(5, "tanh"), bp.Layer(1, "identity")])  # 21 weights: quick to
# compile for the per-sample step
FIELDS = ("epoch", "epochs_run", "best_epoch", "converged", "stopped_early", "diverged",
          "diverged_epoch")


# numpy draws: jax.random would compile one program per shape and dtype (seconds, here).
def data(N, dtype, seed=1, net=NET):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, net.inputs)).astype(dtype),
            rng.normal(size=(N, net.outputs)).astype(dtype))


def params(dtype, seed=0, net=NET, models=()):
    rng = np.random.default_rng(seed)
    return tuple((rng.normal(size=(*models, *shape)) / np.sqrt(shape[0])).astype(dtype)
                 for shape in net.shapes)


def mesh(shape=(4,), names=("data",), auto=False):
    """``Explicit`` axes (jax.make_mesh's default from JAX 0.9 on) unless ``auto``."""
    types = (AxisType.Auto if auto else AxisType.Explicit,) * len(shape)
    return jax.make_mesh(shape, names, axis_types=types)


def max_rel(a, b):
    """Largest ``|a - b| / max(|b|, 1)`` over the leaves of two pytrees."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(y), 1)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def compare(sharded, single):
    """What differs between a data-parallel result and the one-device result."""
    return dict(
        params=max_rel(sharded.params, single.params),
        opt_state=max_rel(sharded.opt_state, single.opt_state) if jax.tree.leaves(
            single.opt_state) else 0.0,
        losses=max_rel(sharded.losses, single.losses),
        val_losses=None if single.val_losses is None else max_rel(sharded.val_losses,
                                                                  single.val_losses),
        fields_equal=all(getattr(sharded, f) == getattr(single, f) for f in FIELDS),
        spec=[_spec(w.sharding.spec) for w in sharded.params],
        mesh_axis_types=[str(t) for t in sharded.params[0].sharding.mesh.axis_types],
        devices=[len(w.sharding.device_set) for w in sharded.params],
        shard_shapes=[[list(s.data.shape) for s in w.addressable_shards]
                      for w in sharded.params],
        weights_shapes=[list(w.shape) for w in sharded.params],
    )


def fit_float32_adam_shuffled():
    X, Y = data(64, np.float32)
    kw = dict(learning_rate=0.01, epochs=4, batch_size=16, optimizer=optax.adam(1.0),
              shuffle=jax.random.key(3))
    single = bp.fit(NET, params(np.float32), X, Y, **kw)
    sharded = bp.fit(NET, params(np.float32), X, Y, mesh=mesh(), **kw)
    out = compare(sharded, single)
    # Resuming a data-parallel result (Adam's state and the epoch count come along).
    out["resumed"] = compare(bp.fit(NET, sharded, X, Y, mesh=mesh(), **kw),
                             bp.fit(NET, single, X, Y, **kw))
    return out


def fit_float64_padded_batches_validation_patience():
    # N = 50: not a multiple of 4 (X replicated), nor of B = 8 (the last batch is padded).
    X, Y = data(50, np.float64)
    kw = dict(learning_rate=0.3, epochs=6, batch_size=8, validation=data(12, np.float64, 2),
              patience=2, tol=1e-3)
    single = bp.fit(NET, params(np.float64), X, Y, **kw)
    sharded = bp.fit(NET, params(np.float64), X, Y, mesh=mesh(), **kw)
    return compare(sharded, single)


def fit_float64_softmax_weighted_labels():
    # The softmax cross-entropy on integer labels, per-sample weights (split over the devices
    # with the samples), reshuffled, a weighted validation set.
    X, _ = data(64, np.float64)
    rng = np.random.default_rng(5)
    y, s = rng.integers(0, 2, 64), rng.uniform(0, 2, 64)
    kw = dict(learning_rate=0.5, epochs=3, batch_size=8, loss="softmax_cross_entropy",
              weights=s, shuffle=jax.random.key(4), validation=(X[:16], y[:16], s[:16]))
    single = bp.fit(NET, params(np.float64), X, y, **kw)
    sharded = bp.fit(NET, params(np.float64), X, y, mesh=mesh(), **kw)
    return compare(sharded, single)


def fit_float64_full_batch_clamped_on_a_2d_mesh():
    # A (2, 2) mesh: the batch splits over "data", the other axis holds copies.
    X, Y = data(64, np.float64)
    p0, frozen = bp.clamp(NET, params(np.float64), {(1, 0, 2): 0.5, (2, 3, 1): -1.0})
    kw = dict(learning_rate=0.5, epochs=5, batch_size=None, frozen=frozen,
              optimizer=optax.adamw(1.0, weight_decay=0.1))
    single = bp.fit(NET, p0, X, Y, **kw)
    sharded = bp.fit(NET, p0, X, Y, mesh=mesh((2, 2), ("data", "copies")), **kw)
    out = compare(sharded, single)
    out["clamped_bit_identical"] = all(
        bool(np.all(np.asarray(w)[np.asarray(m)] == np.asarray(w0)[np.asarray(m)]))
        for w, w0, m in zip(sharded.params, p0, frozen))
    return out


def _placed(N, B, shuffle=None):
    """What fit gives the compiled loop on a 4-device mesh (B = batch size)."""
    X, Y = data(N, np.float32)
    prep, _ = arguments.prepare(
        NET, params(np.float32), X, Y, learning_rate=0.1, epochs=1, batch_size=B,
        optimizer=None, frozen=None, opt_state=None, shuffle=shuffle, validation=None,
        tol=None, patience=None, min_delta=0.0)
    return distributed.data_parallel(prep, mesh(), "data")


def placement_and_batches():
    """The data as placed, and each epoch's batches as the compiled loop sees them."""
    out = {}
    for name, shuffle in (("ordered", None), ("shuffled", jax.random.key(5))):
        prep = _placed(64, 16, shuffle)
        batches = jax.jit(partial(minibatch.epoch_data, prep.config))(prep.data, 1)
        Xb = batches[0]
        out[name] = dict(
            X_spec=_spec(prep.data.X.sharding.spec),
            X_shards=[list(s.data.shape) for s in prep.data.X.addressable_shards],
            params_spec=_spec(prep.params[0].sharding.spec),
            batches_shape=list(Xb.shape),
            batches_spec=_spec(Xb.sharding.spec),
            batches_shards=[list(s.data.shape) for s in Xb.addressable_shards],
        )
    prep = _placed(50, 8)  # 50 rows do not split over 4 devices: replicated
    out["uneven"] = dict(X_spec=_spec(prep.data.X.sharding.spec),
                         X_shards=[list(s.data.shape) for s in prep.data.X.addressable_shards])
    return out


def compiled_loop():
    """The collectives in the compiled loop, and the shape of each device's batch."""
    prep = _placed(64, 16)
    loop = fit_loop.initial_state_jit(NET, prep.config, prep.data, prep.params, prep.opt_state,
                                      prep.epoch, chunk=fit_loop.CHUNK)
    hlo = training._loop_jit.lower(NET, None, prep.config, loop, prep.data,
                                   prep.hyper, jnp.asarray(2, jnp.int32)).compile().as_text()
    entry, found = False, []
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):  # a computation
            entry = line.startswith("ENTRY")
        m = re.search(r"= (\(?[^=]*?) (all-reduce|all-gather|all-to-all|reduce-scatter|"
                      r"collective-permute)(-start)?\(", line)
        if m:  # entry: outside the loops (once per call), else inside them
            found.append(dict(op=m.group(2), shape=m.group(1), entry=entry))
    x_slices = sorted(set(re.findall(r"f32\[1,(\d+),3\]\{[^}]*\} dynamic-slice", hlo)))
    return dict(collectives=found, x_batch_slices=[int(s) for s in x_slices])


def sweep_algorithm1_float64():
    M = 8
    many = params(np.float64, 7, SMALL, (M,))
    X, Y = data(12, np.float64, 9, SMALL)
    kw = dict(learning_rate=np.linspace(0.05, 0.8, M), epochs=3,
              shuffle=jax.random.split(jax.random.key(8), M))
    single = bp.sweep(SMALL, many, X, Y, **kw)
    sharded = bp.sweep(SMALL, many, X, Y, mesh=mesh(names=("models",), auto=True), **kw)
    return dict(
        params=max_rel(sharded.params, single.params),
        losses=max_rel(sharded.losses, single.losses),
        fields_equal=all(bool(np.all(np.asarray(getattr(sharded, f))
                                     == np.asarray(getattr(single, f)))) for f in FIELDS),
        spec=[_spec(w.sharding.spec) for w in sharded.params],
        mesh_axis_types=[str(t) for t in sharded.params[0].sharding.mesh.axis_types],
        epochs_run_spec=_spec(sharded.epochs_run.sharding.spec),
        shard_shapes=[[list(s.data.shape) for s in w.addressable_shards]
                      for w in sharded.params],
    )


def errors():
    X, Y = data(50, np.float32)
    X64, Y64 = data(64, np.float32)
    p = params(np.float32)
    many = params(np.float32, 0, NET, (6,))
    fit = partial(bp.fit, NET, p, learning_rate=0.1, epochs=1)
    cases = {
        "batch_not_multiple": lambda: fit(X64, Y64, batch_size=6, mesh=mesh()),
        "algorithm1_on_4_devices": lambda: fit(X64, Y64, batch_size=1, mesh=mesh()),
        "full_batch_not_multiple": lambda: fit(X, Y, batch_size=None, mesh=mesh()),
        "fit_axis_missing": lambda: fit(X64, Y64, batch_size=8, mesh=mesh(names=("x",))),
        "fit_axis_not_str": lambda: fit(X64, Y64, batch_size=8, mesh=mesh(), data_axis=0),
        "fit_not_a_mesh": lambda: fit(X64, Y64, batch_size=8, mesh=jax.devices()),
        "fit_under_jit": lambda: jax.jit(lambda X: fit(X, Y64, batch_size=8, mesh=mesh()).params)(
            X64),
        "sweep_models_not_multiple": lambda: bp.sweep(NET, many, X, Y, learning_rate=0.1, epochs=1,
                                                      mesh=mesh(names=("models",))),
        "sweep_axis_missing": lambda: bp.sweep(NET, many, X, Y, learning_rate=0.1, epochs=1,
                                               mesh=mesh()),
    }
    out = {}
    for name, call in cases.items():
        try:
            call()
            out[name] = None
        except Exception as e:  # noqa: BLE001 - the test checks the type and message
            out[name] = [type(e).__name__, str(e)]
    return out


def algorithm1_on_a_one_device_axis():
    """batch_size=1 with a data axis of one device (on a (1, 4) mesh): Algorithm 1 as it is."""
    X, Y = data(12, np.float64)
    single = bp.fit(NET, params(np.float64), X, Y, learning_rate=0.2, epochs=2)
    sharded = bp.fit(NET, params(np.float64), X, Y, learning_rate=0.2, epochs=2,
                     mesh=mesh((1, 4), ("data", "rest")))
    return compare(sharded, single)


CHECKS = [fit_float32_adam_shuffled, fit_float64_padded_batches_validation_patience,
          fit_float64_softmax_weighted_labels, fit_float64_full_batch_clamped_on_a_2d_mesh, placement_and_batches, compiled_loop,
          sweep_algorithm1_float64, errors, algorithm1_on_a_one_device_axis]


def main():
    results, seconds = {}, {}
    for check in [example, *CHECKS]:
        t0 = time.perf_counter()
        try:
            results[check.__name__] = check()
        except Exception:  # noqa: BLE001 - reported to the test
            results[check.__name__] = {"error": traceback.format_exc()}
        seconds[check.__name__] = round(time.perf_counter() - t0, 2)
    results.update(device_count=jax.device_count(), seconds=seconds)
    print("\n" + json.dumps(results))  # the last line (the example prints before it)


if __name__ == "__main__":
    assert "--xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "")
    main()
