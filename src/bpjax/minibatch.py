"""The gradient-descent family of Algorithm 1: one epoch of steps ``w ← w − η G_B``.

Every step, whatever the batch size ``B``, follows the gradient of its batch's share of the loss,
``G_B = (1/N) Σ_{i∈B} ∂L/∂w(x_i)`` (see :mod:`bpjax.training`): ``B = 1`` with the plain step is
Algorithm 1 itself (:mod:`bpjax.algorithm1`), any other ``B`` or an optax optimizer steps along
``G_B`` computed by the hand-written backward pass. :func:`run` is the compiled loop of
:func:`bpjax.fit` and :func:`bpjax.sweep`: :func:`one_epoch` inside :func:`bpjax.loop.run_epochs`.
"""

from __future__ import annotations

import functools
import weakref
from functools import partial

import jax
import jax.numpy as jnp
import optax

from bpjax.algorithm1 import TINY, algorithm1_epoch, sample_gradient
from bpjax.backward import loss_by_hand, loss_deltas, weight_gradients
from bpjax.clamping import apply_update
from bpjax.distributed import shard_batches
from bpjax.forward import propagate
from bpjax.loop import run_epochs

__all__ = ["as_transformation", "epoch_data", "extra_args", "one_epoch", "run", "shapes_of",
           "state_dtype", "state_leaf", "structure"]


# --- which optax optimizers, and what they are given -----------------------------------------

_MULTI_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_transformation(optimizer):
    """``optimizer`` as an optax ``GradientTransformation``: as it is, or ``None``, or for an
    ``optax.MultiSteps`` its ``gradient_transformation()`` — the same object for the same
    ``MultiSteps``, so that the compiled loop (specialised on the optimizer) is reused.

    Raises:
      TypeError: anything else.
    """
    if optimizer is None or isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if isinstance(optimizer, optax.MultiSteps):
        transformation = _MULTI_STEPS.get(optimizer)
        if transformation is None:
            transformation = _MULTI_STEPS[optimizer] = optimizer.gradient_transformation()
        return transformation
    raise TypeError(
        "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1.0)) or an "
        f"optax.MultiSteps, or None for plain SGD, got {type(optimizer).__name__}: "
        f"{optimizer!r:.60}")


def _probe(optimizer, params, opt_state, many):
    def update(**kwargs):
        def one(p, s):
            fn = (lambda q: sum(jnp.sum(w) for w in q) * 0) if "value_fn" in kwargs else None
            extra = {k: (fn if k == "value_fn" else v(p)) for k, v in kwargs.items()}
            return optimizer.update(p, s, p, **extra)
        return jax.eval_shape(jax.vmap(one) if many else one, params, opt_state)

    zero = lambda p: jnp.zeros((), jax.tree.leaves(p)[0].dtype)
    tries = (("", {}), ("value", dict(value=zero, grad=lambda p: p)),
             ("value_fn", dict(value=zero, grad=lambda p: p, value_fn=None)))
    errors = []
    for kind, kwargs in tries:
        try:
            update(**kwargs)
            return kind
        except Exception as e:  # noqa: BLE001 - the first one is reported: it says the most
            errors.append(e)
    error = errors[0]
    raise TypeError(
        f"bpjax cannot drive this optimizer: its update fails when given what bpjax gives "
        f"(G_B, state, params, and value=, grad=, value_fn= for optax's extra-args "
        f"transformations): {type(error).__name__}: {error}") from error


def structure(tree) -> tuple:
    """``(treedef, ((shape, dtype), ...))`` of a pytree of arrays: a hashable key for caches of
    what depends on shapes only, cheap to build (no dtype promotion)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(v.shape), v.dtype) if hasattr(v, "dtype") and hasattr(
        v, "shape") else (tuple(jnp.shape(v)), jnp.result_type(v)) for v in leaves)


def shapes_of(key: tuple):
    """The pytree of ``jax.ShapeDtypeStruct`` that :func:`structure` describes."""
    treedef, leaves = key
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(*leaf) for leaf in leaves])


@functools.lru_cache(maxsize=64)
def _extra_args_cached(optimizer, key, many):
    params, opt_state = shapes_of(key)
    return _probe(optimizer, params, opt_state, many)


def extra_args(optimizer, params, opt_state, *, many: bool = False) -> str:
    """What ``optimizer.update`` needs besides ``G_B``: ``""`` nothing (adam, sgd, …),
    ``"value"`` the loss and gradient (``value=``, ``grad=``: e.g. ``optax.polyak_sgd``,
    ``optax.contrib.reduce_on_plateau``), ``"value_fn"`` also the loss as a function of the
    weights (``value_fn=``: line searches, ``optax.lbfgs``). Found by tracing its update
    once (``jax.eval_shape``, cached); ``many``: a sweep's leading model axis.

    Raises:
      TypeError: its update fails even with all three, naming why.
    """
    if optimizer is None:
        return ""
    return _extra_args_cached(optimizer, structure((params, opt_state)), many)


def state_dtype(given, expected):
    """The dtype in which the loop carries an optimizer state's leaf given as ``given``, where
    ``optimizer.init`` makes ``expected``: ``expected``, except for an integer given as an
    integer of another width, which keeps its own. Such a count changed width in an update
    (optax 0.2.4's ``lbfgs`` under x64: a weakly typed int64 from ``init``, int32 after), and
    the update's width is the one a resumed loop can carry."""
    ints = jnp.issubdtype(given, jnp.integer) and jnp.issubdtype(expected, jnp.integer)
    return given if ints else expected


def state_leaf(v, expected) -> jax.Array:
    """``v`` as the loop carries it, for the leaf ``expected`` (or its ``jax.eval_shape``):
    strongly typed, so that the compiled loop sees the same types from call to call."""
    return jnp.asarray(v, state_dtype(jnp.result_type(v), expected.dtype))


def _batch_gradient(net, loss, params, X_B, Y_B, m_B, N):
    """``G_B = ∂L_B/∂w = (1/N) Σ_{i∈B} ∂L/∂w(x_i)`` for a batch (``m_B`` masks padding)."""
    tr = propagate(net, params, X_B)
    r = 1 / N if m_B is None else m_B[:, None] / N  # ∂L_B/∂φ^L = r ∂ℓ_i/∂φ^L
    return weight_gradients(net, tr, loss_deltas(net, params, tr, Y_B, loss, r))


def _descend(optimizer, eta, masks, params, opt_state, G):
    """``w ← w − η G`` (optimizer None), or ``w ← w + η u`` with the optimizer's ``u``."""
    if optimizer is None:
        steps = jax.tree.map(lambda g: -eta * g, G)
    else:
        u, opt_state = optimizer.update(G, opt_state, params)
        steps = jax.tree.map(lambda v, w: (eta * v).astype(w.dtype), u, params)
    if masks is None:
        masks = (None,) * len(params)
    return tuple(apply_update(w, s, m) for w, s, m in zip(params, steps, masks)), opt_state


def epoch_data(config, data, epoch):
    """The epoch's samples in order: shuffled with ``fold_in(key, epoch)`` if asked, padded to
    ``steps × B`` with masked samples when ``B`` does not divide ``N``, then batched.

    Returns ``(X, Y, m)``: ``m`` holds each sample's relative weight ``r_i = s_i N / Σ s``
    (``data.s``; 0 for padding), or is None when every sample counts ``1``.
    """
    X, Y, m = data.X, data.Y, data.s
    if config.shuffle:
        perm = jax.random.permutation(jax.random.fold_in(data.key, epoch), config.N)
        X, Y = X[perm], Y[perm]
        m = None if m is None else m[perm]
    if config.batch == 1:
        return X, Y, m
    pad = config.steps * config.batch - config.N
    if pad:
        m = jnp.ones(config.N, X.dtype) if m is None else m
        m = jnp.concatenate([m, jnp.zeros(pad, X.dtype)])
        X = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)])
        Y = jnp.concatenate([Y, jnp.zeros((pad, Y.shape[1]), Y.dtype)])
    if m is not None:
        m = m.reshape(config.steps, config.batch)
    X = X.reshape(config.steps, config.batch, X.shape[-1])
    Y = Y.reshape(config.steps, config.batch, Y.shape[-1])
    if config.batch_sharding is not None:  # data parallel: every batch split over the devices
        X, Y, m = shard_batches(config.batch_sharding, X, Y, m)
    return X, Y, m


def _step_with_extra_args(net, loss, optimizer, kind, eta, masks, params, opt_state, X_B, Y_B,
                          m_B, N):
    """A step of an optimizer that is also given ``value = L_B(w)``, ``grad = G_B`` and
    ``value_fn = L_B`` (the batch's share of the loss, whose gradient is ``G_B``, by hand)."""
    if X_B.ndim == 1:  # batch_size=1: one sample
        X_B, Y_B = X_B[None], Y_B[None]
        m_B = None if m_B is None else m_B[None]
    scale = X_B.shape[0] / N if m_B is None else m_B.sum() / N
    value_fn, value_and_grads = loss_by_hand(net, X_B, Y_B, m_B, scale=scale, base=params,
                                             masks=masks, loss=loss)
    value, G = value_and_grads(params)
    kwargs = dict(value=value, grad=G)
    if kind == "value_fn":
        kwargs["value_fn"] = value_fn
    u, opt_state = optimizer.update(G, opt_state, params, **kwargs)
    steps = jax.tree.map(lambda v, w: (eta * v).astype(w.dtype), u, params)
    if masks is None:
        masks = (None,) * len(params)
    return tuple(apply_update(w, s, m) for w, s, m in zip(params, steps, masks)), opt_state


def one_epoch(net, optimizer, config, data, hyper, params, opt_state, epoch):
    """One epoch: ``⌈N/B⌉`` steps, each on its batch's share of the gradient."""
    X, Y, m = epoch_data(config, data, epoch)
    N = config.N
    masks = data.trainable if config.masked else None
    if config.batch == 1 and optimizer is None:  # Algorithm 1: the fused per-sample step
        return (algorithm1_epoch(net, hyper.eta / N, masks, params, X, Y, config.loss, m),
                opt_state)

    def step(carry, batch):
        params, opt_state = carry
        if config.extra_args:
            return _step_with_extra_args(net, config.loss, optimizer, config.extra_args,
                                         hyper.eta, masks, params, opt_state, *batch, N), None
        if config.batch == 1:
            G = sample_gradient(net, params, *batch, N, config.loss)
        else:
            G = _batch_gradient(net, config.loss, params, *batch, N)
        return _descend(optimizer, hyper.eta, masks, params, opt_state, G), None

    batches = (X, Y, m)
    unroll = 2 if config.batch == 1 and net.num_params > TINY else 1
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches, unroll=unroll)
    return params, opt_state


def run(net, optimizer, config, loop, data, hyper, n):
    """Up to ``n`` epochs of :func:`one_epoch`, with the shared stopping rules."""
    one = partial(one_epoch, net, optimizer, config, data, hyper)
    return run_epochs(net, one, config, loop, data, hyper, n)
