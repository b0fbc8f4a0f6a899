"""``bp.apply`` on 4 CPU devices, for ``apply_test.py``: prints one JSON object.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the device
count is fixed when JAX starts). Each check computes ``(∂ℓ/∂θ, ∂ℓ/∂X)`` through ``bp.apply``
on data split over the devices, and reports its largest relative difference from the same
gradient computed on one device, with the shardings it got; the test asserts on them.
"""

import json
import os
import traceback

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import bpjax as bp  # noqa: E402

# a skip from x to the output, a mask and no bias: ∂ℓ/∂x sums two layers' contributions
NET = bp.Network(3, [bp.Layer(5, "tanh"),
                     bp.Layer(2, "identity", inputs=(0, 1), bias=False,
                              adjacency=np.eye(8, 2, dtype=bool) | np.eye(8, 2, -4, dtype=bool))])
N = 16


def huber(r, c=0.5):
    return jnp.where(jnp.abs(r) <= c, 0.5 * r * r, c * (jnp.abs(r) - 0.5 * c))


def loss(params, X, Y):
    return jnp.mean(huber(bp.apply(NET, params, X) - Y))


def problem():
    rng = np.random.default_rng(0)
    params = tuple(rng.normal(size=shape) / np.sqrt(shape[0]) for shape in NET.shapes)
    return params, rng.normal(size=(N, NET.inputs)), rng.normal(size=(N, NET.outputs))


GRAD = jax.jit(jax.grad(loss, argnums=(0, 1)))


def max_rel(a, b):
    """Largest ``|a - b| / max(|b|, 1)`` over the leaves of two pytrees."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(y), 1)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def spec(a):
    """The mesh axes of each dimension of ``a``, trailing unsplit ones dropped: ``P('data',)``
    and ``P('data', None)`` are ``["data"]`` (their repr differs between jax versions)."""
    axes = list(a.sharding.spec)
    while axes and axes[-1] is None:
        axes.pop()
    return axes


def report(grads, reference):
    gp, gx = grads
    return dict(params=max_rel(gp, reference[0]), inputs=max_rel(gx, reference[1]),
                params_spec=[spec(g) for g in gp], inputs_spec=spec(gx),
                structural_zeros=all(bool(np.all(np.asarray(g)[~NET.structure(l)] == 0))
                                     for l, g in enumerate(gp, start=1)))


def placed(axis_types):
    """The problem on a 4-device ``data`` mesh: X, Y split along the samples, θ replicated."""
    mesh = jax.make_mesh((4,), ("data",), axis_types=axis_types)
    params, X, Y = problem()
    rows, copies = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    return mesh, jax.device_put(params, copies), jax.device_put(X, rows), jax.device_put(Y, rows)


def jit_on_an_auto_mesh(reference):
    """As ``fit(..., mesh=)`` runs: jit's partitioner splits the work and adds the all-reduce."""
    _, params, X, Y = placed((AxisType.Auto,))
    hlo = GRAD.lower(params, X, Y).compile().as_text()
    return dict(report(GRAD(params, X, Y), reference),
                all_reduces=hlo.count(" all-reduce("), all_gathers=hlo.count(" all-gather("))


def jit_on_an_explicit_mesh(reference):
    """``jax.make_mesh``'s default axis type: shardings are part of the types."""
    _, params, X, Y = placed((AxisType.Explicit,))
    return report(GRAD(params, X, Y), reference)


def grad_of_shard_map_with_psum(reference):
    """The loss sums each device's share with ``psum`` inside ``shard_map``; ``jax.grad`` of
    it runs the custom VJP on every device and transposes the collective."""
    mesh, params, X, Y = placed((AxisType.Explicit,))

    def local(params, X, Y):
        r = bp.apply(NET, params, X) - Y
        return jax.lax.psum(jnp.sum(huber(r)), "data") / (N * NET.outputs)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                            out_specs=P())
    return report(jax.jit(jax.grad(sharded, argnums=(0, 1)))(params, X, Y), reference)


def main():
    params, X, Y = problem()
    reference = jax.device_get(GRAD(params, X, Y))  # one device
    results = {}
    for check in (jit_on_an_auto_mesh, jit_on_an_explicit_mesh, grad_of_shard_map_with_psum):
        try:
            results[check.__name__] = check(reference)
        except Exception:  # noqa: BLE001 - reported to the test
            results[check.__name__] = {"error": traceback.format_exc()}
    results["device_count"] = jax.device_count()
    print(json.dumps(results))


if __name__ == "__main__":
    assert "--xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "")
    main()
