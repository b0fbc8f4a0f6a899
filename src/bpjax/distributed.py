"""Scaling out over many devices with JAX's own machinery: a mesh, shardings and SPMD.

bpjax writes no communication of its own. It places arrays on a :class:`jax.sharding.Mesh`
with :class:`jax.sharding.NamedSharding`, and ``jax.jit``'s SPMD partitioner splits the
compiled training loop of :mod:`bpjax.training` across the devices and inserts XLA's
collectives. Across hosts, the same program runs on every process after
``jax.distributed.initialize()`` (see ``examples/distributed_fit.py``).

**Data parallel** (:func:`bpjax.fit` with ``mesh=``; ``n`` devices on ``data_axis``):

| training.py                                | on the mesh                                         |
| ------------------------------------------ | --------------------------------------------------- |
| batch ``B`` of an epoch, ``(steps, B, D)`` | ``P(None, axis)``: each device holds ``B/n`` of it  |
| ``G_B = (1/N) Σ_{i∈B} ∂L/∂w(x_i)``         | per-device sums ``φ_inᵀ δ^l``, then one all-reduce  |
| weights ``w^l_jk``, optimizer state        | replicated, ``P()``: every device takes the step    |
| ``X``, ``Y``, the validation set           | ``P(axis)`` (replicated if ``n`` does not divide N) |
| loss (1) after each epoch                  | per-device partial sums, then one all-reduce        |

Every batch is split evenly, so ``B`` (``N`` for the full batch) must be a multiple of ``n``.
Algorithm 1 itself (``batch_size=1``) is sequential: sample ``i + 1`` needs the weights that
sample ``i`` left, so there is nothing to split and a data axis of more than one device is
an error. It scales out the other way: many models at once.

**Model parallel sweeps** (:func:`bpjax.sweep` with ``mesh=``, ``n`` devices on
``model_axis``): every array with a leading model axis ``M`` — weights, optimizer states,
learning rates, per-model shuffling keys, the loop's state — is split along it, ``P(axis)``,
so each device trains ``M/n`` models and nothing is communicated; the shared data are
replicated. ``M`` must be a multiple of ``n``.

Meshes whose axes are ``Explicit`` (the default of ``jax.make_mesh``) are used through an
``Auto`` copy of themselves (the same devices and axis names), which lets the partitioner
place what the code does not; results come back on the mesh that was given.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__: list[str] = []  # used through fit(..., mesh=) and sweep(..., mesh=)


@functools.lru_cache(maxsize=16)
def _auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names, every axis ``Auto`` (sharding left to the compiler)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def _check_mesh(mesh, axis, what: str) -> tuple[Mesh, int]:
    """Checks ``mesh`` and its named axis; returns the ``Auto`` mesh and the axis size."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh, e.g. jax.make_mesh((jax.device_count(),), "
            f"({axis!r},)), got {type(mesh).__name__}")
    if not isinstance(axis, str):
        raise TypeError(f"{what} must be the name of a mesh axis (a str), got {axis!r}")
    if axis not in mesh.axis_names:
        raise ValueError(
            f"mesh has no axis {axis!r} (its axes: {tuple(mesh.axis_names)}); name one of "
            f"them with {what}=")
    return _auto(mesh), int(mesh.shape[axis])


def _place(v, sharding: NamedSharding) -> jax.Array:
    """``v`` placed with ``sharding``.

    Across several processes, a value each process holds itself (numpy, or an array on its
    own devices) must be the same on every process; each fills the shards of its devices.
    """
    if sharding.is_fully_addressable or (isinstance(v, jax.Array) and not v.is_fully_addressable):
        return jax.device_put(v, sharding)
    if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
        data = _place(jax.random.key_data(v), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(v))
    host = np.asarray(v)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _put(tree, shardings):
    """``tree``'s arrays placed with ``shardings``: one for all, or a tree shaped like ``tree``.

    One batched ``jax.device_put`` on one process; array by array across several.
    """
    one = isinstance(shardings, NamedSharding)
    if all(s.is_fully_addressable for s in ([shardings] if one else jax.tree.leaves(shardings))):
        return jax.device_put(tree, shardings)
    if one:
        return jax.tree.map(lambda v: _place(v, shardings), tree)
    return jax.tree.map(_place, tree, shardings)


def _rows(mesh: Mesh, axis: str, n: int, v) -> NamedSharding | None:
    """``v`` split along its first axis, or replicated when ``n`` does not divide it."""
    if v is None:
        return None
    return NamedSharding(mesh, P(axis) if v.shape[0] % n == 0 else P())


def data_parallel(prep, mesh, axis: str):
    """Checks the data-parallel request and places what :func:`bpjax.fit` prepared.

    Args:
      prep: ``bpjax.arguments.Prepared`` (weights, optimizer state, data, hyper-parameters,
        static config).
      mesh: a :class:`jax.sharding.Mesh`.
      axis: the mesh axis that splits every batch.

    Returns:
      ``prep`` with the weights and optimizer state replicated, the data split along the
      samples, and ``config.batch_sharding`` set so that each batch is split along ``axis``.

    Raises:
      TypeError, ValueError: not a mesh, no such axis, ``batch_size=1`` on several devices,
        a batch size that is not a multiple of the number of devices on the axis, tracers
        (under ``jax.jit`` or ``jax.vmap``).
    """
    mesh, n = _check_mesh(mesh, axis, "data_axis")
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(prep)):
        raise TypeError("fit(..., mesh=) places the data on the mesh itself: call it outside "
                        "jax.jit and jax.vmap")
    config = prep.config
    B = config.batch
    if B == 1 and n > 1:
        raise ValueError(
            f"batch_size=1 is Algorithm 1, one sample after the other: it cannot be split "
            f"over the {n} devices of mesh axis {axis!r}. Use a batch size that is a multiple "
            f"of {n}, or scale Algorithm 1 out by training many models at once with "
            f"bp.sweep(..., mesh=mesh, model_axis=...)")
    if B % n:
        which = f"the full batch N = {B} (batch_size=None)" if B == config.N else \
            f"batch_size = {B}"
        raise ValueError(
            f"{which} must be a multiple of the {n} devices of mesh axis {axis!r}: each device "
            f"takes an equal share of every batch")
    d = prep.data
    samples = (d.X, d.Y, d.X_val, d.Y_val, d.s, d.s_val)
    X, Y, X_val, Y_val, s, s_val = _put(samples,
                                        tuple(_rows(mesh, axis, n, v) for v in samples))
    params, opt_state, hyper, trainable, key = _put(
        (prep.params, prep.opt_state, prep.hyper, d.trainable, d.key), NamedSharding(mesh, P()))
    return prep._replace(
        params=params, opt_state=opt_state, hyper=hyper,
        data=d._replace(X=X, Y=Y, X_val=X_val, Y_val=Y_val, trainable=trainable, key=key,
                        s=s, s_val=s_val),
        config=config._replace(batch_sharding=NamedSharding(mesh, P(None, axis))))


def shard_batches(sharding: NamedSharding, *batches):
    """Inside the compiled loop: each batch ``(steps, B, ...)`` split along ``B``."""
    return tuple(None if v is None else jax.lax.with_sharding_constraint(v, sharding)
                 for v in batches)


def model_parallel(mesh, axis: str, M: int, models, data, data_axes):
    """Checks the sharded-sweep request and places a sweep's arrays.

    Args:
      mesh: a :class:`jax.sharding.Mesh`.
      axis: the mesh axis that splits the models.
      M: the number of models.
      models: a pytree whose leaves have a leading model axis of size ``M``: split along it.
      data: the sweep's ``bpjax.loop.Data``, shared by the models except the fields whose
        entry in ``data_axes`` is 0 (one shuffling key per model), which are split likewise.
      data_axes: ``data``'s ``vmap`` axes.

    Returns:
      ``(models, data)``, placed.

    Raises:
      TypeError, ValueError: not a mesh, no such axis, ``M`` not a multiple of the number
        of devices on the axis.
    """
    mesh, n = _check_mesh(mesh, axis, "model_axis")
    if M % n:
        raise ValueError(
            f"the M = {M} models must be a multiple of the {n} devices of mesh axis {axis!r}: "
            f"each device trains M/{n} of them")
    split, replicated = NamedSharding(mesh, P(axis)), NamedSharding(mesh, P())
    data = type(data)(*(_put(v, split if a == 0 else replicated) for v, a in zip(data, data_axes)))
    return _put(models, split), data


def on_mesh(tree, mesh: Mesh):
    """``tree``'s arrays relabelled onto ``mesh`` (the one the caller gave), same layout.

    The arrays were computed on :func:`_auto` of ``mesh``: the devices and the layout are the
    same, so no data moves; only the mesh's axis types change back.
    """
    if mesh is _auto(mesh):
        return tree

    def relabel(v):
        s = getattr(v, "sharding", None)
        if isinstance(s, NamedSharding) and s.mesh.devices.shape == mesh.devices.shape:
            return NamedSharding(mesh, s.spec)
        return s  # not computed on the mesh (e.g. histories already on the host): as it is

    return _put(tree, jax.tree.map(relabel, tree))


@functools.cache
def one_process() -> bool:
    """Whether this is the only JAX process (fixed once JAX has started its backend)."""
    return jax.process_count() == 1


def to_host(v) -> np.ndarray:
    """``np.asarray(v)``; an array split across processes is gathered from all of them first.

    Every process must call it (it is a collective when ``v`` spans several hosts).
    """
    if not isinstance(v, jax.Array) or one_process():
        return np.asarray(v)
    if not (v.is_fully_addressable or v.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(v, tiled=True))
    return np.asarray(v)
