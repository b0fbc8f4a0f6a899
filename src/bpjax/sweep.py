"""Many models at once: :func:`sweep` trains ``M`` networks of one architecture in one call.

Every model runs :func:`bpjax.fit`'s loop — the same steps, stopping rules and results — and
``jax.vmap`` turns the ``M`` loops into one, so small networks share each step's work: ``256``
networks of ``2-16-1`` train far faster together than one after another. The models differ by
their initial weights, their learning rates, and optionally their shuffling keys; they share
the data, the optimizer and the clamps.

Results come as one :class:`bpjax.FitResult` whose fields carry a leading model axis:
``params[l-1]`` is ``(M, 1 + fan_in, N_l)``, ``losses`` is ``(M, epochs)`` (NaN after a model
stopped) and the scalars are arrays ``(M,)``. Model ``m``'s result is
``jax.tree.map(lambda v: v[m], result)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax import minibatch
from bpjax.algorithm1 import sequential, sequential_jit
from bpjax.arguments import prepare
from bpjax.compilation import batched_jit
from bpjax.distributed import model_parallel, on_mesh
from bpjax.loop import (
    CHUNK,
    Data,
    FitResult,
    Hyper,
    check_on_divergence,
    check_progress,
    drive,
    initial_state,
    result,
    warn_divergence,
)
from bpjax.network import Network, check_network
from bpjax.params import Params, check_params

__all__ = ["sweep"]


def _stack(net, params):
    """A list (or tuple) of per-model params, each a tuple of ``L`` arrays, stacked into one
    tuple with a leading model axis; anything else is returned as it is."""
    if type(params) not in (list, tuple) or (params and not isinstance(
            params[0], (list, tuple)) and hasattr(params[0], "shape")):
        return params  # stacked already, a previous result, or something to complain about
    if not params:
        raise ValueError(f"sweep needs at least one model (M >= 1): params is an empty "
                         f"{type(params).__name__}")
    for m, p in enumerate(params):
        try:
            check_params(net, p)
        except (TypeError, ValueError) as e:
            raise type(e)(f"model {m} of the list: {e}") from None
    return tuple(jnp.stack(ws) for ws in zip(*params))


def _models(params) -> int:
    """``M``, read from the leading axis of ``params`` (or of a previous result's)."""
    inner = getattr(params, "params", params)
    try:
        first = inner[0]
        shape = np.shape(first)
    except (TypeError, IndexError, KeyError) as e:
        raise TypeError(
            f"params must be a tuple of arrays with a leading model axis (or a list of per-model "
            f"params), got {type(params).__name__}") from e
    if len(shape) != 3:
        raise ValueError(
            f"params[0] must have shape (M, 1 + fan_in, N_1) with a leading model axis, got "
            f"shape {shape}; stack models with jax.vmap(lambda k: bp.init(net, k))(keys), or "
            f"pass a list of per-model params")
    if shape[0] == 0:
        raise ValueError("sweep needs at least one model (M >= 1), got M = 0 (params[0] has "
                         f"shape {shape})")
    return shape[0]


def _data_axes(data: Data) -> Data:
    """The data are shared by every model, except shuffling keys given one per model."""
    key_axis = 0 if data.key is not None and data.key.ndim == 1 else None
    return Data(X=None, Y=None, X_val=None, Y_val=None, trainable=None, key=key_axis)


def _loop_many(net, optimizer, config, axes, loop, data, hyper, n):
    one = lambda loop, data, hyper: minibatch.run(net, optimizer, config, loop, data, hyper, n)
    return jax.vmap(one, in_axes=(0, axes, 0))(loop, data, hyper)


_STATIC = dict(static_argnames=("net", "optimizer", "config", "axes"), donate_argnames=("loop",))
_loop_many_jit = batched_jit(_loop_many, **_STATIC)
_loop_many_sequential_jit = sequential_jit(_loop_many, per_network=None, **_STATIC)


@batched_jit(static_argnames=("net", "config", "axes", "chunk"))
def _initial_many_jit(net, config, axes, data, params, opt_state, epoch, chunk):
    one = lambda data, p, s, e: initial_state(net, config, data, p, s, e, chunk)
    return jax.vmap(one, in_axes=(axes, 0, 0, 0))(data, params, opt_state, epoch)


def sweep(
    net: Network,
    params: Params | FitResult,
    X,
    Y,
    *,
    learning_rate=None,
    epochs: int,
    batch_size: int | None = 1,
    optimizer: optax.GradientTransformation | None = None,
    frozen: Params | None = None,
    opt_state=None,
    shuffle: jax.Array | None = None,
    validation: tuple | None = None,
    tol: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    progress: bool | dict = False,
    mesh: jax.sharding.Mesh | None = None,
    model_axis: str = "models",
    on_divergence: str = "warn",
    loss=None,
    weights=None,
) -> FitResult:
    """Trains ``M`` models of one network at once, each exactly as :func:`bpjax.fit` would.

    Args:
      net: the network, shared by every model.
      params: initial weights with a leading model axis, ``params[l-1]`` of shape
        ``(M, 1 + fan_in, N_l)``, e.g. ``jax.vmap(lambda k: bp.init(net, k))(keys)``; or a
        list of ``M`` per-model params (each a tuple of ``L`` arrays), stacked for you; or a
        previous sweep's result (or a sweep's :class:`bpjax.Checkpoint`), to resume it.
      X: inputs ``(N, D)``, shared.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``; integer class labels ``(N,)`` when
        ``d > 1``), shared.
      learning_rate: ``η > 0``, one for every model or an array ``(M,)``; as in
        :func:`bpjax.fit`, required without an optimizer and 1 by default with one.
      epochs: the number of epochs, at most.
      batch_size: as in :func:`bpjax.fit`.
      optimizer: as in :func:`bpjax.fit`, shared.
      frozen: boolean masks shaped like one model's ``params``, shared.
      opt_state: the optimizer states, with a leading model axis.
      shuffle: one ``jax.random.key`` for all models, or an array of ``M`` keys (one each).
      validation: optional ``(X_val, Y_val)``, shared.
      tol: as in :func:`bpjax.fit`, shared.
      patience: as in :func:`bpjax.fit`, shared.
      min_delta: as in :func:`bpjax.fit`, shared.
      progress: a tqdm progress bar, as in :func:`bpjax.fit`.
      mesh: a :class:`jax.sharding.Mesh`: split the models over the devices of its axis
        ``model_axis``, ``M/n`` models on each of its ``n`` devices (see
        :mod:`bpjax.distributed`); ``M`` must be a multiple of ``n``.
      model_axis: the name of the mesh axis that splits the models.
      on_divergence: ``"warn"`` (default): one :class:`bpjax.DivergenceWarning` naming the
        models whose training loss became NaN or infinite, their epochs and learning rates;
        ``"ignore"``: nothing (``result.diverged`` tells which, either way).
      loss: the loss, shared, as in :func:`bpjax.fit`.
      weights: per-sample weights ``(N,)``, shared, as in :func:`bpjax.fit`.

    Returns:
      A :class:`bpjax.FitResult` with a leading model axis on every field; ``losses`` and
      ``val_losses`` are ``(M, epochs)``, NaN after a model stopped. With a mesh, the arrays
      with a model axis stay split over it.
    """
    check_on_divergence(on_divergence)
    check_progress(progress)
    check_network(net, "sweep")
    params = _stack(net, params)
    M = _models(params)
    prep, epochs = prepare(
        net, params, X, Y, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, frozen=frozen, opt_state=opt_state, shuffle=shuffle,
        validation=validation, tol=tol, patience=patience, min_delta=min_delta, models=M,
        loss=loss, who="sweep", weights=weights)
    config, data, optimizer = prep.config, prep.data, prep.optimizer
    hyper = Hyper(*((np if isinstance(v, np.ndarray) else jnp).broadcast_to(v, (M,))
                     for v in prep.hyper))
    epoch = jnp.broadcast_to(jnp.asarray(prep.epoch, jnp.int32), (M,))
    axes = _data_axes(data)
    if mesh is not None:  # the models split over the mesh: see bpjax.distributed
        (params, opt_state, hyper, epoch), data = model_parallel(
            mesh, model_axis, M, (prep.params, prep.opt_state, hyper, epoch), data, axes)
        prep = prep._replace(params=params, opt_state=opt_state)

    loop = _initial_many_jit(net, config, axes, data, prep.params, prep.opt_state, epoch,
                             chunk=CHUNK)

    loop_jit = _loop_many_sequential_jit if sequential(config, data) else _loop_many_jit

    def run(loop, n):
        return loop_jit(net, optimizer, config, axes, loop, data, hyper, np.int32(n))

    loop, losses, val_losses = drive(run, loop, epochs, progress, "sweep")
    dtype = prep.params[0].dtype

    def history(chunks):
        h = np.concatenate(chunks, axis=-1) if chunks else np.zeros((M, 0), dtype)
        return jax.device_put(np.pad(h, ((0, 0), (0, epochs - h.shape[-1])),
                                  constant_values=np.nan))

    out = result(config, loop, history(losses), history(val_losses))
    warn_divergence(out, on_divergence, learning_rate, "sweep")
    return out if mesh is None else on_mesh(out, mesh)
