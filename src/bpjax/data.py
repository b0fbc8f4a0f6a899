"""The training data X × Y = {(x_i, y_i)}: shapes, dtypes and checks.

``X`` is ``(N, D)`` (or one ``x`` of shape ``(D,)``), ``Y`` is ``(N, d)`` (or one ``y`` of
shape ``(d,)``; ``(N,)`` is accepted when ``d = 1``). Checks run on shapes and dtypes only, so
they work on tracers inside ``jax.jit`` and ``jax.vmap``; :func:`check_finite` looks at values
and is used where data enters a long computation (``fit``, the gradient checker).

**Complex numbers** are refused everywhere (``X``, ``Y``, ``weights``, ``params``): loss (1)
and its gradient are real. That is a dtype check, free.

**Checked once per signature.** The eager functions hand their arguments, as given, to a
jitted core that checks and promotes them when it is traced (:func:`eager`): ``jax.jit``
traces once per network, shapes and dtypes, so a call with a signature seen before runs no
check at all, and numpy inputs are converted by ``jax.jit`` itself on the way in. A bad
argument fails the trace; the checks then run again on the arguments as given, and raise the
error that names them.

**NaN and Inf.** The eager functions — :func:`bpjax.forward`, :func:`bpjax.forward_trace`,
:func:`bpjax.loss`, :func:`bpjax.backprop`, :func:`bpjax.value_and_backprop`,
:func:`bpjax.per_example_backprop`, :func:`bpjax.deltas` — check shapes and dtypes, then
compute: NaN or Inf in ``X``, ``Y`` or ``params`` comes back as NaN or Inf, as from any JAX
function. Looking at the values would cost a transfer from the device on every call, more
than the whole call for a small network, and nothing under ``jax.jit`` could raise anyway. To
check values: ``bp.check_params(net, params, finite=True)``, ``bool(jnp.isfinite(X).all())``,
or ``jax.config.update("jax_debug_nans", True)`` to raise where a NaN first appears.
:func:`bpjax.fit`, :func:`bpjax.sweep`, :func:`bpjax.check_gradients` and
:func:`bpjax.chain_rule_paths` — where values enter a long computation, or are read on the host
anyway — refuse NaN and Inf with an error naming the array and its first bad entry.
"""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.distributed import one_process
from bpjax.network import Network

__all__ = ["as_array", "as_dtype", "as_inputs", "as_targets", "as_weights", "check_finite",
           "eager", "float_dtype", "is_labels", "one_hot", "real_array"]


def float_dtype(*arrays) -> jnp.dtype:
    """The floating dtype of a computation: the promoted dtype of its arrays."""
    dtypes = {getattr(a, "dtype", None) for a in arrays}
    if len(dtypes) == 1 and jnp.issubdtype(next(iter(dtypes)) or object, jnp.floating):
        dtype = next(iter(dtypes))  # the common case, without jnp.result_type's overhead
        if dtype.itemsize <= 4 or jax.config.jax_enable_x64:
            return dtype
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(dtype, float)
    return dtype


def as_dtype(v, dtype) -> jax.Array:
    """``v`` as a JAX array of ``dtype``; a JAX array that already is one is returned as is."""
    if isinstance(v, jax.Array) and v.dtype == dtype:
        return v
    return jnp.asarray(v, dtype)


def _shape(v, name):
    if not hasattr(v, "shape"):
        given, v = v, np.asarray(v)
        if v.dtype == object or v.dtype.kind in "US" and v.ndim == 0:
            raise TypeError(f"{name} must be a numeric array, got {type(given).__name__}: "
                            f"{given!r:.60}")
    if v.dtype == object or not (
        jnp.issubdtype(v.dtype, jnp.number) or jnp.issubdtype(v.dtype, jnp.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {v.dtype}")
    if jnp.issubdtype(v.dtype, jnp.complexfloating):  # loss (1) and its gradient are real
        raise TypeError(f"{name} must be real, got dtype {v.dtype}: bpjax computes with real "
                        f"numbers (pass the real part, or real and imaginary parts as features)")
    return v, tuple(v.shape)


def real_array(v, name: str):
    """``v`` (made an array if it is not one) and its shape; a ``TypeError`` naming ``name``
    unless it holds real numbers or booleans (a dtype check: no host sync, works on tracers)."""
    return _shape(v, name)


def as_array(v):
    """``v`` as it is if it is an array (JAX, numpy) or None, else ``np.asarray(v)``."""
    return v if v is None or isinstance(v, (jax.Array, np.ndarray)) else np.asarray(v)


def eager(jitted, check, net: Network, params, *arrays, static: tuple = ()):
    """``jitted(net, params, *arrays, *static)`` for an eager function whose jitted core checks
    its arguments when traced (``net`` and ``static`` its static arguments); ``arrays`` that are
    not arrays go in as numpy.

    ``jax.jit`` retraces, and so checks, once per network, static arguments, shapes and dtypes:
    the checks cost nothing on the calls after the first. If the call fails,
    ``check(net, params, *arrays, *static)`` runs the same checks on the arguments as given,
    outside any trace, so that a bad argument raises the error that names it (not a tracer, nor
    ``jax.jit``'s complaint about a non-array); if they pass, the original error is raised.
    """
    try:
        return jitted(net, params, *[as_array(v) for v in arrays], *static)
    except Exception as e:  # noqa: BLE001 - whatever failed, the checks below say why
        error = e
    check(net, params, *arrays, *static)  # outside the except clause: not chained to the error
    raise error


def as_inputs(net: Network, X, name: str = "X") -> tuple[jax.Array, bool]:
    """Returns ``(X, single)`` with ``X`` of shape ``(N, D)``; ``single`` if one ``x`` was given.

    ``name`` is what errors call it (``"X_val"`` for a validation set).

    Raises:
      TypeError: ``X`` is not an array of real numbers.
      ValueError: ``X`` is neither ``(N, D)`` nor ``(D,)``, or ``N = 0``.
    """
    X, shape = _shape(X, name)
    D = net.inputs
    if len(shape) == 1 and shape[0] == D:
        return X[None, :], True
    if len(shape) == 2 and shape[1] == D:
        if shape[0] == 0:
            raise ValueError(f"{name} has N = 0 samples (shape {shape}); expected at least one")
        return X, False
    raise ValueError(
        f"{name} must have shape (N, D) = (N, {D}) or (D,) = ({D},), got shape {shape}")


def is_labels(Y, d: int, single: bool) -> bool:
    """Whether ``Y`` holds integer class labels: an integer array of shape ``(N,)`` (``()`` for
    one sample) for a network of ``d > 1`` outputs, where one-hot targets ``(N, d)`` are meant."""
    if d == 1:
        return False
    if not hasattr(Y, "dtype"):  # a Python int, or a list of them
        try:
            Y = np.asarray(Y)
        except (TypeError, ValueError):
            return False  # not an array at all: as_targets says so
    return jnp.issubdtype(Y.dtype, jnp.integer) and Y.ndim == (0 if single else 1)


def one_hot(labels, d: int, name: str = "Y"):
    """Integer class labels ``(N,)`` as one-hot targets ``(N, d)``.

    Concrete labels are checked first, each must be in ``0..d-1``, and encoded with numpy
    (nothing is compiled). Traced labels cannot be checked: one out of range gives a row of
    zeros.

    Raises:
      ValueError: a label outside ``0..d-1``, naming the first.
    """
    if not isinstance(labels, (np.ndarray, jax.Array)):
        labels = np.asarray(labels)  # a Python int, or a list of them: concrete
    if isinstance(labels, np.ndarray) or (
            isinstance(labels, jax.Array) and not isinstance(labels, jax.core.Tracer)
            and labels.is_fully_addressable):
        v = np.asarray(labels)
        bad = (v < 0) | (v >= d)
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0]) if v.ndim else ()
            raise ValueError(
                f"{name} holds integer class labels, which must be in 0..d-1 = 0..{d - 1} for a "
                f"network of d = {d} outputs; {int(bad.sum())} are not, first {name}"
                f"{list(i)} = {int(v[i])}")
        return (v[..., None] == np.arange(d)).astype(np.float32)
    return jax.nn.one_hot(labels, d, dtype=jnp.float32)


def as_targets(net: Network, Y, N: int, single: bool, name: str = "Y",
               inputs: str = "X") -> jax.Array:
    """Returns ``Y`` of shape ``(N, d)``, matching the inputs (called ``inputs`` in errors).

    Integer class labels, shape ``(N,)`` (``()`` for one sample) when ``d > 1``, are one-hot
    encoded (:func:`one_hot`): label ``c`` becomes the row with 1 in column ``c``.

    Raises:
      TypeError: ``Y`` is not an array of real numbers.
      ValueError: ``Y`` does not match ``d`` or ``N``, or holds a class label outside
        ``0..d-1``.
    """
    d = net.outputs
    if is_labels(Y, d, single):
        if not single and np.shape(Y)[0] != N:
            raise ValueError(f"{inputs} has N = {N} samples but {name} has {np.shape(Y)[0]} "
                             f"class labels (shape {np.shape(Y)})")
        Y = one_hot(Y, d, name)
    Y, shape = _shape(Y, name)
    if single:
        if shape in ((d,), (1, d)):
            return Y.reshape(1, d)
        labels = " (or one integer class label)" if d > 1 else ""
        raise ValueError(
            f"{name} must have shape (d,) = ({d},) for a single x, got shape {shape}{labels}")
    if len(shape) == 1 and d == 1 and shape[0] == N:
        return Y[:, None]
    if len(shape) == 2 and shape[1] == d and shape[0] == N:
        return Y
    if (len(shape) == 2 and shape[1] == d) or (len(shape) == 1 and d == 1):
        raise ValueError(
            f"{inputs} has N = {N} samples but {name} has {shape[0]} (shape {shape})")
    labels = " (or integer class labels of shape (N,))" if d > 1 else ""
    raise ValueError(f"{name} must have shape (N, d) = ({N}, {d}), got shape {shape}{labels}")


def as_weights(weights, N: int, name: str = "weights"):
    """Returns per-sample weights ``s`` of shape ``(N,)`` (or ``None`` for all ones).

    ``name`` is what errors call them (``"weights_val"`` for a validation set's).
    """
    if weights is None:
        return None
    weights, shape = _shape(weights, name)
    if shape != (N,):
        raise ValueError(f"{name} must have shape (N,) = ({N},), got shape {shape}")
    if not isinstance(weights, jax.core.Tracer):
        w = np.asarray(weights)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"{name} must be finite, >= 0, and not all 0")
    return weights


def check_finite(**arrays) -> None:
    """Raises ``ValueError`` naming the first array that holds NaN or Inf (concrete arrays only).

    Each array is added up first (one pass, no copy on a CPU): when the sum is finite, so is
    every entry; else the entries are scanned for the first bad one (or the sum overflowed).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        for name, v in arrays.items():
            if v is not None and not isinstance(v, jax.core.Tracer):
                _check_finite(name, v)


# Every live JAX array found finite, by id: a JAX array is immutable, so the same object
# holds the same values (data given again to fit, a sweep's X). Weak references: an array
# that is freed leaves, so its id cannot name another one. Arrays that span several hosts are
# never remembered: their check is a collective every process must take part in.
_KNOWN_FINITE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _check_finite(name, v) -> None:
    dtype = v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype
    if np.dtype(dtype).kind in "biu":  # integers (class labels): finite, nothing to read
        return
    if isinstance(v, jax.Array):
        if _KNOWN_FINITE.get(id(v)) is v:
            return
        if not one_process() and not v.is_fully_addressable:
            if not bool(jnp.all(jnp.isfinite(v))):  # spans several hosts: every one reduces
                raise ValueError(f"{name} holds NaN/Inf value(s)")
            return
    a = np.asarray(v)
    if np.isfinite(a.sum()):  # then every entry is finite
        if isinstance(v, jax.Array):
            _KNOWN_FINITE[id(v)] = v
        return
    v = a
    if not np.all(np.isfinite(v)):  # or the sum overflowed
        bad = np.argwhere(~np.isfinite(v))
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} holds {len(bad)} NaN/Inf value(s), first at index {first}: {v[first]}")
