"""bpjax on many devices and hosts: a data-parallel fit and a sharded sweep.

Run the same script in every process; each process drives its local devices and the mesh
spans all of them (``jax.devices()``):

    # one process, all the local devices (GPUs of a node, or CPU devices for a try):
    python examples/distributed_fit.py
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/distributed_fit.py

    # several processes, one per host (or per GPU node): give each its id
    python examples/distributed_fit.py --coordinator host0:1234 --num-processes 2 --process-id 0
    python examples/distributed_fit.py --coordinator host0:1234 --num-processes 2 --process-id 1

    # a TPU pod slice, SLURM, Open MPI, Kubernetes: JAX finds the processes itself
    python examples/distributed_fit.py          # on every host of the slice / every task

What runs: the paper's quadratic regression target, learned by a ``D-H-H-1`` tanh network

* ``fit(..., mesh=mesh)`` with minibatches: every batch is split over the devices of the
  mesh axis ``data``, the weights are replicated, and XLA adds the devices' partial gradients
  with one all-reduce per step; ``--check`` trains the same network on one device too and
  reports the largest difference (float32 rounding);
* ``sweep(..., mesh=mesh_models)``: ``M`` models (one learning rate each) split over the
  devices of the axis ``models``, each device training ``M/n`` of them, independently. This is
  how Algorithm 1 itself (``batch_size=1``, sequential by nature) scales out.

Process 0 prints the results (and writes them as JSON with ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import bpjax as bp
from bpjax.checkpoint import atomic_file


def start(args) -> str:
    """Joins the other processes, if any: ``jax.distributed.initialize``, before any JAX work."""
    if args.coordinator is not None:
        if args.cpu_collectives:  # several CPU processes (a test on one machine) need gloo
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        return "explicit"
    try:  # a TPU pod slice, SLURM, Open MPI, Kubernetes, or JAX_COORDINATOR_ADDRESS et al.
        jax.distributed.initialize()
        return "auto-detected"
    except ValueError:  # none of those: one process
        return "single process"


def dataset(n: int, D: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's §1.3.1 target, ``y = (x·a)² + x_1``, for ``n`` samples (same on every host)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)).astype(np.float32)
    a = rng.normal(size=D).astype(np.float32) / np.sqrt(D)
    return X, ((X @ a) ** 2 + X[:, 0])[:, None].astype(np.float32)


def global_rows(mesh, axis: str, A: np.ndarray) -> jax.Array:
    """``A`` split along its rows over ``axis``; each process reads only the rows it holds."""
    sharding = NamedSharding(mesh, P(axis))
    return jax.make_array_from_callback(A.shape, sharding, lambda index: A[index])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coordinator", help="host:port of process 0 (several processes)")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--cpu-collectives", action="store_true",
                   help="several CPU processes: use gloo for the collectives")
    p.add_argument("--samples-per-device", type=int, default=512)
    p.add_argument("--batch-per-device", type=int, default=16)
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--models-per-device", type=int, default=4)
    p.add_argument("--sweep-samples", type=int, default=256)
    p.add_argument("--check", action="store_true", help="also train on one device, compare")
    p.add_argument("--json", help="process 0 writes the results here")
    args = p.parse_args(argv)

    how = start(args)
    n = jax.device_count()
    main_process = jax.process_index() == 0
    say = print if main_process else (lambda *a, **k: None)
    say(f"{how}: {jax.process_count()} process(es), {n} device(s) "
        f"({jax.local_device_count()} local, {jax.devices()[0].platform})")

    net = bp.Network(args.inputs, [bp.Layer(args.hidden, "tanh"), bp.Layer(args.hidden, "tanh"),
                                   bp.Layer(1, "identity")])
    params = bp.init(net, jax.random.key(0), dtype=jnp.float32)
    X, Y = dataset(args.samples_per_device * n, args.inputs)
    B = args.batch_per_device * n
    kw = dict(learning_rate=3e-3, epochs=args.epochs, batch_size=B, optimizer=optax.adam(1.0),
              shuffle=jax.random.key(1))

    # Data parallel: every batch of B samples split over the n devices of the axis "data".
    mesh = jax.make_mesh((n,), ("data",))
    Xg, Yg = global_rows(mesh, "data", X), global_rows(mesh, "data", Y)
    t0 = time.perf_counter()
    result = bp.fit(net, params, Xg, Yg, mesh=mesh, **kw)
    seconds = time.perf_counter() - t0
    out = dict(devices=n, processes=jax.process_count(), samples=len(X), batch_size=B,
               fit_losses=np.asarray(result.losses).tolist(), fit_seconds=seconds,
               params_sharding=str(result.params[0].sharding.spec))
    say(f"fit: N = {len(X)}, B = {B} ({B // n} per device), {args.epochs} epochs in "
        f"{seconds:.2f}s (compilation included); loss {out['fit_losses'][0]:.4g} -> "
        f"{out['fit_losses'][-1]:.4g}")
    if args.check:
        one = bp.fit(net, params, X, Y, **kw)  # the same training on one device
        out["fit_max_abs_diff"] = max(  # replicated weights: every process has them all
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(result.params, one.params))
        out["fit_loss_max_abs_diff"] = float(np.max(np.abs(
            np.asarray(result.losses) - np.asarray(one.losses))))
        say(f"  vs one device: weights differ by at most {out['fit_max_abs_diff']:.2e}, "
            f"losses by {out['fit_loss_max_abs_diff']:.2e} (float32 rounding)")

    # A sharded sweep: M models, M/n on each device, no communication between them.
    M = args.models_per_device * n
    mesh_models = jax.make_mesh((n,), ("models",))
    keys = jax.random.split(jax.random.key(2), M)
    many = jax.vmap(lambda k: bp.init(net, k, dtype=jnp.float32))(keys)
    etas = jnp.logspace(-2, 0, M, dtype=jnp.float32)
    t0 = time.perf_counter()
    S = args.sweep_samples
    swept = bp.sweep(net, many, X[:S], Y[:S], learning_rate=etas, epochs=args.epochs,
                     batch_size=1, mesh=mesh_models)  # Algorithm 1 for every model
    seconds = time.perf_counter() - t0
    final = np.asarray(swept.losses)[:, -1]
    out.update(models=M, sweep_final_losses=final.tolist(), sweep_seconds=seconds,
               sweep_learning_rates=np.asarray(etas).tolist(),
               sweep_shard_rows=[s.data.shape[0] for s in swept.params[0].addressable_shards])
    best = int(np.nanargmin(final))
    say(f"sweep: {M} models of Algorithm 1 ({M // n} per device) on {S} samples in "
        f"{seconds:.2f}s; best learning rate {float(etas[best]):.3g}, loss {final[best]:.4g}")
    if args.json and main_process:
        with atomic_file(args.json) as f:  # the whole file or none: read by other processes
            f.write(json.dumps(out).encode())
    return out


if __name__ == "__main__":
    main()
