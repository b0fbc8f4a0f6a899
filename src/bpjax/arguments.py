"""The arguments of :func:`bpjax.fit` and :func:`bpjax.sweep`: checked before any work, and
prepared for the compiled loop (:mod:`bpjax.loop`).

Every bad input raises a ``TypeError`` or ``ValueError`` that names the argument, before
anything is compiled or run. Checks look at shapes, and at values where they are concrete:
traced values (under ``jax.jit`` or ``jax.vmap``) pass unchecked.
"""

from __future__ import annotations

import functools
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax.checkpoint import Checkpoint
from bpjax.clamping import check_frozen
from bpjax.data import as_dtype, as_inputs, as_targets, as_weights, check_finite, float_dtype
from bpjax.loop import Config, Data, FitResult, Hyper
from bpjax.loss import resolve_loss
from bpjax.losses import Loss, check_targets
from bpjax.minibatch import as_transformation, extra_args, shapes_of, state_leaf, structure
from bpjax.network import Network
from bpjax.params import Params, as_key, check_layers, check_params, structural

__all__ = ["Prepared", "check_models", "check_opt_state", "check_values", "init_state",
           "is_traced", "number", "prepare", "state_shape", "training_loss"]


def is_traced(*trees) -> bool:
    return any(isinstance(v, jax.core.Tracer) for t in trees for v in jax.tree.leaves(t))


def number(value, name, *, integer=False, minimum=None, strict=False, allow_none=False):
    """Checks a hyper-parameter given as a real number; returns it (tracers pass unchecked).

    ``TypeError`` unless ``value`` is an int or float (or a 0-d numeric array; bools, strings,
    complex numbers and ``None`` are not), ``ValueError`` unless it is finite and ``>=
    minimum`` (``>`` if ``strict``); the messages name ``name``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, jax.core.Tracer):
        return value
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) or (
        hasattr(value, "shape") and np.shape(value) == () and (
            np.issubdtype(np.asarray(value).dtype, np.integer)
            or (not integer and np.issubdtype(np.asarray(value).dtype, np.floating))))
    if isinstance(value, (bool, np.bool_)) or not ok_type or (
            integer and isinstance(value, (float, np.floating))):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}: {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return value


_scalar = number  # this module's name for it


def _check_learning_rate(eta, models=None):
    """η > 0 and finite: a number, or for a sweep an array of shape ``(M,)``."""
    if isinstance(eta, jax.core.Tracer):
        return eta
    if models is None and isinstance(eta, (jax.Array, np.ndarray, list, tuple)) and \
            np.ndim(eta) > 0:
        raise TypeError(f"learning_rate must be a number, got an array of shape "
                        f"{np.shape(eta)}: one rate per model is for bp.sweep")
    if models is not None and np.ndim(eta) > 0:
        v = np.asarray(eta)
        if v.shape != (models,):
            raise ValueError(
                f"learning_rate must be a number or have shape (M,) = ({models},), "
                f"got shape {v.shape}")
        if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
            raise TypeError(f"learning_rate must hold real numbers, got dtype {v.dtype}")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"learning_rate must be finite and > 0 for every model, got {v}")
        return eta
    return _scalar(eta, "learning_rate", minimum=0, strict=True)


def init_state(optimizer, params):
    return optax.EmptyState() if optimizer is None else optimizer.init(params)


@functools.lru_cache(maxsize=64)
def _state_shape(optimizer, key):
    return jax.eval_shape(partial(init_state, optimizer), shapes_of(key))


def state_shape(optimizer, params):
    """``init_state(optimizer, params)`` as ``jax.ShapeDtypeStruct`` leaves, without running
    it: traced once per optimizer and shapes of ``params`` (cached)."""
    return _state_shape(optimizer, structure(params))


def check_opt_state(optimizer, opt_state, params):
    """``opt_state`` must have the structure, shapes and dtypes that ``optimizer.init`` makes."""
    expected = state_shape(optimizer, params)
    exp_leaves, exp_def = jax.tree.flatten(expected)
    leaves, treedef = jax.tree.flatten(opt_state)
    name = "plain SGD (optimizer=None)" if optimizer is None else "the optimizer"
    if treedef != exp_def:
        raise ValueError(
            f"opt_state does not fit {name}: expected structure {exp_def}, got {treedef}")
    for i, (v, e) in enumerate(zip(leaves, exp_leaves)):
        if np.shape(v) != e.shape:
            raise ValueError(
                f"opt_state leaf {i} has shape {np.shape(v)}, expected {e.shape} from {name}")
    return jax.tree.map(state_leaf, opt_state, expected)


def _host(v, dtype):
    """A hyper-parameter as a numpy array (handed to the compiled loop with its arguments,
    without a dispatch of its own), or as a JAX array if it is one already (or traced)."""
    return jnp.asarray(v, dtype) if isinstance(v, jax.Array) else np.asarray(v, dtype)


def training_loss(net: Network, loss, start=None, who: str = "fit") -> Loss:
    """The loss to train on: ``loss`` (a name or a :class:`~bpjax.Loss`), checked against
    ``net``; ``None`` means the loss a checkpoint ``start`` names, else ``"squared"``.

    A :class:`bpjax.Checkpoint` saved with ``save(..., loss=...)`` names the loss its weights
    were trained on: resuming from it with another loss is allowed (fine-tuning) but warned
    about, as the likelier cause is a forgotten ``loss=``.
    """
    saved = getattr(start, "loss", None) if isinstance(start, Checkpoint) else None
    if loss is None:
        loss = "squared" if saved is None else saved
    resolved = resolve_loss(net, loss)
    if saved is not None and resolved.name != saved:
        warnings.warn(
            f"{who}: resuming from a checkpoint saved with loss {saved!r}, now training on "
            f"loss {resolved.name!r}; pass loss={saved!r} (or loss=None) to continue as it "
            f"was trained", UserWarning, stacklevel=4)
    return resolved


class Prepared(NamedTuple):
    params: Params
    opt_state: Any
    epoch: Any
    data: Data
    hyper: Hyper
    config: Config
    optimizer: Any = None  # as an optax GradientTransformation (minibatch.as_transformation)


def relative_weights(s, dtype):
    """Sample weights ``s`` ``(N,)`` as ``r_i = s_i N / Σ s`` (so that ``r_i / N`` is sample
    ``i``'s share of the loss), in ``dtype``; None stays None."""
    if s is None:
        return None
    if isinstance(s, jax.Array):  # traced, or on a device: computed there
        s = s.astype(dtype)
        return s * (s.shape[0] / s.sum())
    s = np.asarray(s, np.float64)
    return np.asarray(s * (s.shape[0] / s.sum()), dtype)


def prepare(net, params, X, Y, *, learning_rate, epochs, batch_size, optimizer, frozen,
             opt_state, shuffle, validation, tol, patience, min_delta, models=None, loss=None,
             who="fit", weights=None, defer_init=False):
    """Checks every input before any work, and builds the loop's inputs.

    With ``models = M`` (a sweep), ``params`` leaves carry a leading axis of size ``M``.
    ``loss`` as in :func:`training_loss`; ``weights`` the per-sample weights ``(N,)``.
    ``net`` is checked by the caller first (:func:`bpjax.network.check_network`, which names it).

    ``defer_init`` (:func:`bpjax.fit`): ``opt_state`` stays ``None`` when it is not given, and
    the optimizer's ``init`` runs inside the compiled start of the loop (no dispatch for each
    of its arrays).
    """
    loss = training_loss(net, loss, params, who)
    epoch = 0
    if isinstance(params, (FitResult, Checkpoint)):
        if opt_state is not None:
            raise ValueError("pass either a previous result or opt_state, not both")
        params, opt_state, epoch = params.params, params.opt_state, params.epoch
    optimizer = as_transformation(optimizer)
    epochs = _scalar(epochs, "epochs", integer=True, minimum=0)
    if isinstance(epochs, jax.core.Tracer):
        raise TypeError("epochs must be a Python int (it sets the length of the loss history)")
    epochs = int(epochs)

    if models is None:
        shapes = [np.shape(w) for w in params] if isinstance(params, (tuple, list)) else []
        if len(shapes) == net.depth and all(
                len(s) == 3 and s[1:] == e for s, e in zip(shapes, net.shapes)):
            raise ValueError(
                f"params come from a sweep of M = {shapes[0][0]} models (a leading model axis): "
                f"resume it with bp.sweep, or take model m with jax.tree.map(lambda v: v[m], "
                f"result)")
        params = check_params(net, params)
    else:
        params = check_models(net, params, models)
    X, single = as_inputs(net, X)
    N = X.shape[0]
    Y = as_targets(net, Y, N, single)
    check_targets(loss, Y)
    s = as_weights(weights, N)
    dtype = float_dtype(X, *params)

    if batch_size is None:
        B = N
    else:
        batch_size = _scalar(batch_size, "batch_size", integer=True, minimum=1)
        if isinstance(batch_size, jax.core.Tracer):
            raise TypeError("batch_size must be a Python int or None")
        B = int(batch_size)
        if B > N:
            raise ValueError(f"batch_size must be at most N = {N} (or None), got {B}")
    if learning_rate is None:
        if optimizer is None:
            raise TypeError(
                "learning_rate is required for the plain step of the paper (optimizer=None); "
                "with an optax optimizer it defaults to 1 (the optimizer's own rate applies)")
        learning_rate = 1.0
    eta = _check_learning_rate(learning_rate, models)
    tol = _scalar(tol, "tol", minimum=0, allow_none=True)
    patience = _scalar(patience, "patience", integer=True, minimum=1, allow_none=True)
    min_delta = _scalar(min_delta, "min_delta", minimum=0)
    frozen = check_frozen(net, frozen)

    X_val = Y_val = s_val = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
            size = f" of {len(validation)}" if isinstance(validation, (tuple, list)) else ""
            raise TypeError(
                f"validation must be a pair (X_val, Y_val) or a triple (X_val, Y_val, "
                f"weights_val), got {type(validation).__name__}{size}")
        X_val, single_val = as_inputs(net, validation[0], "X_val")
        Y_val = as_targets(net, validation[1], X_val.shape[0], single_val, "Y_val", "X_val")
        check_targets(loss, Y_val, "Y_val")
        if len(validation) == 3:
            s_val = as_weights(validation[2], X_val.shape[0], "weights_val")
        X_val, Y_val = jnp.asarray(X_val, dtype), jnp.asarray(Y_val, dtype)
    check_values(X, Y, X_val, Y_val, params)

    if shuffle is not None:
        shuffle = as_key(shuffle, "shuffle")
        if models is None and shuffle.shape != ():
            raise ValueError(f"shuffle must be one key for fit, got shape {shuffle.shape} (a "
                             f"key per model is for bpjax.sweep)")
        if models is not None and shuffle.shape not in ((), (models,)):
            raise ValueError(f"shuffle must be one key or an array of M = {models} keys, got "
                             f"shape {shuffle.shape}")

    params = tuple(as_dtype(w, dtype) for w in params)
    # The weights training may change: structure & ~frozen, per layer; None where all may.
    trainable = []
    for l in range(1, net.depth + 1):
        m = None if net.is_dense(l) else jnp.asarray(net.structure(l))
        if frozen is not None and (is_traced(frozen[l - 1]) or np.any(frozen[l - 1])):
            free = jnp.logical_not(frozen[l - 1])  # (a layer without clamps needs no mask)
            m = free if m is None else jnp.logical_and(m, free)
        trainable.append(m)
    masked = any(m is not None for m in trainable)
    trainable = tuple(trainable) if masked else None
    if models is None:
        params = structural(net, params)
        if opt_state is None:
            opt_state = None if defer_init and optimizer is not None else \
                init_state(optimizer, params)
        elif not is_traced(opt_state):
            opt_state = check_opt_state(optimizer, opt_state, params)
    else:
        params = jax.vmap(partial(structural, net))(params)
        if opt_state is None:
            opt_state = jax.vmap(partial(init_state, optimizer))(params)
        else:
            opt_state = jax.vmap(partial(check_opt_state, optimizer))(opt_state, params) \
                if is_traced(opt_state) else _check_opt_state_many(optimizer, opt_state, params)

    steps = -(-N // B)
    needs = "" if optimizer is None else extra_args(
        optimizer, params, state_shape(optimizer, params) if opt_state is None else opt_state,
        many=models is not None)
    if needs == "value_fn" and B != N:
        raise ValueError(
            f"this optimizer searches along a line (its update needs value_fn=, like "
            f"optax.lbfgs): it needs the whole loss, so batch_size=None (full batch), got "
            f"batch_size={batch_size}")
    config = Config(N=N, batch=B, steps=steps, shuffle=shuffle is not None,
                     validate=validation is not None, restore_best=patience is not None,
                     masked=masked, extra_args=needs, loss=loss)
    data = Data(as_dtype(X, dtype), as_dtype(Y, dtype), X_val, Y_val, trainable, shuffle,
                relative_weights(s, dtype), relative_weights(s_val, dtype))
    hyper = Hyper(
        eta=_host(eta, dtype),
        tol=_host(-np.inf if tol is None else tol, dtype),
        patience=_host(0 if patience is None else patience, np.int32),
        min_delta=_host(min_delta, dtype),
    )
    return Prepared(params, opt_state, epoch, data, hyper, config, optimizer), epochs


def check_values(X, Y, X_val, Y_val, params) -> None:
    """Raises ``ValueError`` naming the first of the data and weights with NaN or Inf."""
    check_finite(X=X, Y=Y, X_val=X_val, Y_val=Y_val,
                 **{f"params[{l - 1}] (layer {l})": w for l, w in enumerate(params, start=1)})


def check_models(net, params, models):
    """Sweep params: every leaf ``(M, 1 + fan_in, N_l)``."""
    return check_layers(net, params, what="arrays with a leading model axis",
                        leading=(models,), expected="(M, 1 + fan_in, N_l) =")


def _check_opt_state_many(optimizer, opt_state, params):
    first = jax.tree.map(lambda v: v[0], opt_state)
    check_opt_state(optimizer, first, jax.tree.map(lambda v: v[0], params))
    expected = jax.eval_shape(jax.vmap(partial(init_state, optimizer)), params)
    return jax.tree.map(state_leaf, opt_state, expected)


