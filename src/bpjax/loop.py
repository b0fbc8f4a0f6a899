"""The epoch loop that every trainer shares: Algorithm 1, line 3, "or until convergence".

    for t = 1 until t = T do ... ▷ or until convergence                 (Algorithm 1, line 3)

A trainer (:mod:`bpjax.minibatch` for :func:`bpjax.fit` and :func:`bpjax.sweep`) says what one
epoch does to the weights; :func:`run_epochs` runs epochs inside one ``lax.while_loop`` and adds
what they all share: the loss after each epoch, the validation loss, and the stopping rules
(``tol``, ``patience``, divergence) described in :mod:`bpjax.training`. :func:`drive` calls the
compiled loop in chunks of at most :data:`CHUNK` epochs from Python, with an optional progress
bar, and :func:`result` turns the final state into a :class:`FitResult`. :func:`bpjax.fit`'s
loop carries its state as a :class:`Packed` one (the weights, then two vectors), built on the
host by :func:`host_start` and read back by :func:`host_view`.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.distributed import to_host
from bpjax.loss import loss_of_params
from bpjax.losses import SQUARED
from bpjax.params import Params

__all__ = ["CHUNK", "Config", "Data", "DivergenceWarning", "FitResult", "Hyper", "LoopState",
           "Packed", "check_on_divergence", "check_progress", "drive", "fresh_state",
           "host_result", "host_start", "host_view", "initial_state", "initial_state_jit", "pack",
           "result", "run_epochs", "unpack", "warn_divergence"]

CHUNK = 64  # epochs per call of the compiled loop (the size of its loss buffer)
_PROGRESS_INTERVAL = 0.5  # seconds between progress-bar refreshes


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    **One set of weights.** Everything here describes ``params``: they are the weights after
    epoch ``best_epoch`` of this call, ``epoch`` epochs in all. An epoch whose training loss is
    NaN or infinite (divergence) is *not kept*: its weights are dropped, and it appears
    neither in ``losses`` nor in the epoch counts; ``diverged_epoch`` names it.

    Attributes:
      params: the trained weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      opt_state: the optimizer state that goes with ``params`` (``optax.EmptyState()`` for the
        plain step); pass the result back to :func:`fit` to resume.
      losses: the loss (``loss=``, (1) by default) on the training set after each epoch kept,
        ``losses[t-1]`` after epoch ``t`` of this call; shape ``(epochs_run,)``. That is
        ``(epochs,)`` unless training stopped early: fewer entries after ``tol`` or
        ``patience``, and after divergence in epoch ``t`` only the ``t - 1`` finite ones (none
        if the first epoch diverged).
      val_losses: the same loss on the validation set of the same weights as ``losses``, same
        shape, or ``None`` without ``validation``.
      epoch: the number of epochs that made ``params``, in total, counting those of a resumed
        result (the epoch a resumed :func:`fit` continues from): ``epochs_run`` more than the
        start, or ``best_epoch`` more with ``patience``.
      epochs_run: the number of epochs this call ran and kept, ``len(losses)``.
      best_epoch: the epoch of this call (1-based; 0 for the initial weights) whose weights
        ``params`` holds: ``epochs_run``, or with ``patience`` the best one. When it is ``≥ 1``,
        ``losses[best_epoch - 1]`` (and ``val_losses[best_epoch - 1]``) is the loss of
        ``params``.
      converged: whether the training loss reached ``tol``.
      stopped_early: whether ``patience`` ran out.
      diverged: whether training stopped because the training loss became NaN or infinite;
        :func:`fit` also warns (:class:`DivergenceWarning`) unless ``on_divergence="ignore"``.
      diverged_epoch: the epoch of this call (1-based) whose loss was not finite, which was
        not kept (``epochs_run + 1``); 0 if none.

    Called eagerly, :func:`fit` (and :func:`bpjax.levenberg_marquardt`) return the scalars as
    Python ``int`` and ``bool`` and the histories as numpy arrays: they are read from the
    device once, at the end. Under ``jax.jit`` or ``jax.vmap`` (and from :func:`bpjax.sweep`)
    the scalars are arrays and ``losses`` has shape ``(epochs,)``, padded with NaN after the
    last epoch kept.
    """

    params: Params
    opt_state: Any
    losses: jax.Array | np.ndarray
    val_losses: jax.Array | np.ndarray | None
    epoch: int
    epochs_run: int
    best_epoch: int
    converged: bool
    stopped_early: bool
    diverged: bool
    diverged_epoch: int


# --- the state of the loop ------------------------------------------------------------------


class Config(NamedTuple):
    """What the compiled loop is specialised on (hashable, static)."""

    N: int  # samples
    batch: int  # B (N for full batch)
    steps: int  # ⌈N/B⌉ steps per epoch
    shuffle: bool
    validate: bool
    restore_best: bool  # patience given: keep the best weights
    masked: bool  # some weights are frozen or structural zeros
    batch_sharding: Any = None  # data parallel: how each batch is split (bpjax.distributed)
    extra_args: str = ""  # what the optimizer's update needs besides G_B (minibatch.extra_args)
    loss: Any = SQUARED  # the bpjax.Loss trained on (its functions are part of the key)


class Data(NamedTuple):
    """The traced inputs that stay fixed during training."""

    X: jax.Array  # (N, D)
    Y: jax.Array  # (N, d)
    X_val: jax.Array | None
    Y_val: jax.Array | None
    trainable: tuple | None  # per layer: structure & ~frozen (bool), None if all trainable
    key: jax.Array | None  # shuffling key
    s: jax.Array | None = None  # (N,) sample weights as r_i = s_i N / Σ s; None: all 1
    s_val: jax.Array | None = None  # (N_val,) validation sample weights; None: all 1


class Hyper(NamedTuple):
    """The traced hyper-parameters (changing them never recompiles)."""

    eta: jax.Array  # η
    tol: jax.Array  # -inf when not given
    patience: jax.Array  # int32
    min_delta: jax.Array


class LoopState(NamedTuple):
    """The state carried from epoch to epoch (and from one call of the loop to the next)."""

    params: Params
    opt_state: Any
    best_params: Params | None
    best_opt_state: Any
    best_loss: jax.Array  # the best monitored loss so far
    best_epoch: jax.Array  # its epoch in this fit call (0 = initial weights)
    since_best: jax.Array  # epochs since the monitored loss last improved
    epoch: jax.Array  # epochs trained in total (shuffling keys are folded with it)
    done: jax.Array  # epochs run in this fit call
    count: jax.Array  # epochs run in this call of the loop: the index into `losses`
    losses: jax.Array  # (C,)
    val_losses: jax.Array  # (C,)
    converged: jax.Array
    stopped_early: jax.Array
    diverged: jax.Array


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def run_epochs(net, one_epoch, config, loop, data, hyper, n, stop=None):
    """Runs up to ``n`` epochs, fewer if training stops; losses go to ``loop.losses[count]``.

    ``loop`` is a :class:`LoopState`, whose ``count`` and histories are reset first, or a
    :class:`Packed` one (:func:`host_start`), carried packed through the loop and returned so.

    ``one_epoch(params, opt_state, t)`` returns the weights and optimizer state after epoch
    ``t + 1`` (``t`` counts the epochs trained before, in total); this function adds what
    every trainer shares: the loss after each epoch, validation, the stopping rules.
    ``stop(opt_state)``, if given, is a trainer's own reason to stop, checked before each
    epoch (:mod:`bpjax.levenberg_marquardt`: no step left to take); ``None`` adds nothing.
    """

    # A learning rate checked in Python is > 0 and finite; a traced one (under jax.jit) cannot
    # raise, so a bad one runs no epoch at all: epochs_run == 0, losses all NaN.
    eta_ok = jnp.isfinite(hyper.eta) & (hyper.eta > 0)

    def cond(s):
        halt = s.converged | s.stopped_early | s.diverged
        if stop is not None:
            halt = halt | stop(s.opt_state)
        return (s.count < n) & ~halt & eta_ok

    def body(s):
        params, opt_state = one_epoch(s.params, s.opt_state, s.epoch)
        loss = loss_of_params(net, params, data.X, data.Y, data.s, config.loss)
        finite = jnp.isfinite(loss)
        # A diverged epoch is not kept: its weights are dropped, and so is it from the history
        # and the epoch counts, so that everything returned describes the same weights.
        params = _select(finite, params, s.params)
        opt_state = _select(finite, opt_state, s.opt_state)
        kept = finite.astype(s.done.dtype)
        done = s.done + kept
        val = (loss_of_params(net, params, data.X_val, data.Y_val, data.s_val, config.loss)
               if config.validate else loss)
        monitored = val if config.validate else loss
        improved = finite & (monitored < s.best_loss - hyper.min_delta)
        best_loss = jnp.where(improved, monitored, s.best_loss)
        since_best = jnp.where(improved, 0, s.since_best + kept)
        if config.restore_best:
            best_params = _select(improved, params, s.best_params)
            best_opt_state = _select(improved, opt_state, s.best_opt_state)
            best_epoch = jnp.where(improved, done, s.best_epoch)
            stopped_early = since_best >= hyper.patience
        else:
            best_params, best_opt_state = None, None
            best_epoch = done
            stopped_early = s.stopped_early
        nan = jnp.asarray(jnp.nan, s.losses.dtype)
        return LoopState(
            params=params,
            opt_state=opt_state,
            best_params=best_params,
            best_opt_state=best_opt_state,
            best_loss=best_loss,
            best_epoch=best_epoch,
            since_best=since_best,
            epoch=s.epoch + kept,
            done=done,
            count=s.count + kept,
            losses=s.losses.at[s.count].set(jnp.where(finite, loss, nan)),
            val_losses=(s.val_losses.at[s.count].set(jnp.where(finite, val, nan))
                        if config.validate else s.val_losses),
            converged=finite & (loss <= hyper.tol),
            stopped_early=stopped_early & finite,
            diverged=~finite,
        )

    if isinstance(loop, Packed):  # reset on the host (host_start): the call is the loop
        return jax.lax.while_loop(lambda p: cond(unpack(p)), lambda p: pack(body(unpack(p))),
                                  loop)
    nan = jnp.full_like(loop.losses, jnp.nan)
    loop = loop._replace(count=jnp.zeros_like(loop.count), losses=nan, val_losses=nan)
    return jax.lax.while_loop(cond, body, loop)


def fresh_state(xp, dtype, epoch, chunk, best_loss=None) -> LoopState:
    """The loop state before the first epoch, without the weights (``params``, ``opt_state``
    and the best ones are ``None``): zeros, NaN histories of length ``chunk``, ``best_loss``
    (default ``inf``). ``xp`` is ``jnp`` (traceable) or ``np`` (built on the host)."""
    i32 = partial(xp.asarray, dtype=xp.int32)
    no = xp.asarray(False)
    return LoopState(
        params=None, opt_state=None, best_params=None, best_opt_state=None,
        best_loss=xp.asarray(xp.inf if best_loss is None else best_loss, dtype),
        best_epoch=i32(0), since_best=i32(0), epoch=i32(epoch), done=i32(0), count=i32(0),
        losses=xp.full(chunk, xp.nan, dtype), val_losses=xp.full(chunk, xp.nan, dtype),
        converged=no, stopped_early=no, diverged=no)


def initial_state(net, config, data, params, opt_state, epoch, chunk):
    """The loop state before the first epoch of a fit call (traceable): the weights and
    optimizer state, with ``patience`` the best ones and their monitored loss."""
    dtype = params[0].dtype
    best_loss = None
    if config.restore_best:  # the initial weights are candidates too
        X, Y, s = ((data.X_val, data.Y_val, data.s_val) if config.validate
                   else (data.X, data.Y, data.s))
        best_loss = loss_of_params(net, params, X, Y, s, config.loss)
        best_loss = jnp.where(jnp.isfinite(best_loss), best_loss, jnp.inf)
    copy = partial(jax.tree.map, jnp.copy)
    return fresh_state(jnp, dtype, epoch, chunk, best_loss)._replace(
        params=copy(params),
        opt_state=copy(opt_state),
        best_params=copy(params) if config.restore_best else None,
        best_opt_state=copy(opt_state) if config.restore_best else None,
    )


initial_state_jit = jax.jit(initial_state, static_argnames=("net", "config", "chunk"))


# --- fit's loop state in two buffers ---------------------------------------------------------
#
# XLA:CPU runs a computation of a few kernels one after the other on one thread, and a larger
# one as a graph of tasks on its thread pool, which costs tens of microseconds a call on a
# small machine; and every array returned costs a little, and every array the host reads is
# read apart. With 13 arrays of state, copied into the loop and out of it, that was most of
# what a fit call on a small network cost. So :func:`bpjax.fit`'s compiled loop carries its
# state packed, through the ``lax.while_loop`` too: the weights apart, every scalar and both
# histories in two vectors, which the host reads at once.

_INT_FIELDS = ("best_epoch", "since_best", "epoch", "done", "count", "converged",
               "stopped_early", "diverged")
_FLAGS = ("converged", "stopped_early", "diverged")


class Packed(NamedTuple):
    """A :class:`LoopState` as :func:`bpjax.fit`'s compiled loop carries it.

    ``ints`` ``(8,)`` int32: the fields named in ``_INT_FIELDS`` (flags as 0 and 1).
    ``floats`` ``(1 + 2C,)`` in the weights' dtype: ``best_loss``, then ``losses`` and
    ``val_losses`` (``C`` entries each).
    """

    params: Params
    opt_state: Any
    best_params: Params | None
    best_opt_state: Any
    ints: Any
    floats: Any


def pack(loop: LoopState, xp=jnp) -> Packed:
    """``loop`` as a :class:`Packed`; ``xp`` is ``jnp`` (traceable) or ``np`` (on the host)."""
    ints = xp.stack([xp.asarray(getattr(loop, k), xp.int32) for k in _INT_FIELDS])
    dtype = loop.losses.dtype
    floats = xp.concatenate([xp.asarray(loop.best_loss, dtype)[None], loop.losses,
                             loop.val_losses])
    return Packed(loop.params, loop.opt_state, loop.best_params, loop.best_opt_state, ints,
                  floats)


def unpack(p: Packed) -> LoopState:
    """The :class:`LoopState` packed in ``p``: traceable, and on the host (numpy ``ints``
    and ``floats`` give numpy scalars)."""
    i, f = p.ints, p.floats
    C = (f.shape[0] - 1) // 2
    fields = {k: (i[j] != 0 if k in _FLAGS else i[j]) for j, k in enumerate(_INT_FIELDS)}
    return LoopState(params=p.params, opt_state=p.opt_state, best_params=p.best_params,
                     best_opt_state=p.best_opt_state, best_loss=f[0], losses=f[1:1 + C],
                     val_losses=f[1 + C:], **fields)


_CARRIED = ("best_epoch", "since_best", "epoch", "done")  # kept from one call to the next


def host_start(prev: LoopState, chunk: int) -> Packed:
    """The packed state for a call of the loop, built on the host from ``prev``, the state as
    the host holds it: :func:`host_view` of the previous call's, or at the start of a fit
    call :func:`fresh_state` (``xp=np``) with the weights and optimizer state. Nothing has run
    in this call (``count`` and the flags 0, NaN histories of length ``chunk``); the best
    weights, their loss and epoch and the epoch counts carry over."""
    ints = np.array([getattr(prev, k) if k in _CARRIED else 0 for k in _INT_FIELDS], np.int32)
    floats = np.full(1 + 2 * chunk, np.nan, prev.params[0].dtype)
    floats[0] = prev.best_loss
    return Packed(prev.params, prev.opt_state, prev.best_params, prev.best_opt_state, ints,
                  floats)


def host_view(p: Packed) -> LoopState:
    """The :class:`LoopState` of the compiled loop's output ``p``, its scalars and histories
    read from the device at once (two arrays); the weights stay where they are."""
    return unpack(p._replace(ints=to_host(p.ints), floats=to_host(p.floats)))


def result(config, loop, losses, val_losses) -> FitResult:
    """The result from the final loop state (arrays; a Python loop makes them scalars)."""
    params, opt_state = loop.params, loop.opt_state
    if config.restore_best:
        params, opt_state = loop.best_params, loop.best_opt_state
    return FitResult(
        params=params,
        opt_state=opt_state,
        losses=losses,
        val_losses=val_losses if config.validate else None,
        epoch=loop.epoch - loop.done + loop.best_epoch,  # the epochs that made `params`
        epochs_run=loop.done,
        best_epoch=loop.best_epoch,
        converged=loop.converged,
        stopped_early=loop.stopped_early,
        diverged=loop.diverged,
        diverged_epoch=(loop.done + 1) * loop.diverged,  # arithmetic: arrays or numpy alike
    )


_SCALARS = ("epoch", "done", "best_epoch", "converged", "stopped_early", "diverged")


def host_result(config, loop, losses, val_losses, dtype) -> FitResult:
    """The result of a trainer driven from Python (:func:`drive`): the loss histories joined
    into numpy arrays and the scalars made Python ints and bools.

    The scalars are read to the host once each (they are ready: :func:`drive` has waited
    for them) and combined there: no operation is dispatched for them.
    """
    # numpy: the histories were read from the device already, and putting them back would
    # cost more than a small network's epoch (jnp.asarray even compiles for each new length)
    losses = np.concatenate(losses) if losses else np.zeros(0, dtype)
    val_losses = (np.concatenate(val_losses) if val_losses else np.zeros(0, dtype)) \
        if config.validate else None
    loop = loop._replace(**{k: to_host(getattr(loop, k)) for k in _SCALARS})
    r = result(config, loop, losses, val_losses)
    return r._replace(
        epoch=int(r.epoch), epochs_run=int(r.epochs_run), best_epoch=int(r.best_epoch),
        converged=bool(r.converged), stopped_early=bool(r.stopped_early),
        diverged=bool(r.diverged), diverged_epoch=int(r.diverged_epoch))


class _Progress:
    """A tqdm bar refreshed at most every ``_PROGRESS_INTERVAL`` seconds, or nothing."""

    def __init__(self, enabled, total, desc):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("progress=True needs tqdm: pip install tqdm") from e
            kwargs = dict(total=total, desc=desc, unit="epoch", mininterval=_PROGRESS_INTERVAL)
            kwargs.update(enabled if isinstance(enabled, dict) else {})
            self.bar = tqdm(**kwargs)

    def epochs_per_call(self, seconds_per_epoch):
        """With a bar, each call of the loop lasts about one refresh interval."""
        if self.bar is None or seconds_per_epoch is None:
            return CHUNK if self.bar is None else 1
        return int(np.clip(_PROGRESS_INTERVAL / max(seconds_per_epoch, 1e-9), 1, CHUNK))

    def update(self, n, losses):
        """Advances by ``n`` epochs, showing the last loss (the median over a sweep's models)."""
        if self.bar is not None:
            self.bar.update(n)
            finite = np.asarray(losses)[np.isfinite(losses)]
            if finite.size:
                self.bar.set_postfix(loss=f"{np.median(finite):.4g}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def drive(run, loop, epochs, progress, desc):
    """Calls the compiled loop until ``epochs`` epochs ran or training stopped.

    ``run(loop, n)`` runs up to ``n`` more epochs from the :class:`LoopState` ``loop``. Returns
    the final loop state and the loss histories (numpy, ``(..., epochs_run)``, NaN where a
    model of a sweep had stopped).
    """
    losses, val_losses = [], []
    bar = _Progress(progress, epochs, desc)
    try:
        remaining, per_epoch = epochs, None
        while remaining > 0:
            n = min(remaining, bar.epochs_per_call(per_epoch))
            t0 = time.perf_counter()
            loop = run(loop, n)
            count, loss, val_loss, converged, stopped_early, diverged = map(to_host, (
                loop.count, loop.losses, loop.val_losses, loop.converged, loop.stopped_early,
                loop.diverged))
            ran = int(np.max(count))
            per_epoch = (time.perf_counter() - t0) / max(ran, 1)
            losses.append(loss[..., :ran])
            val_losses.append(val_loss[..., :ran])
            remaining -= ran
            if ran:
                bar.update(ran, losses[-1][..., -1])
            if ran < n or np.all(converged | stopped_early | diverged):
                break
    finally:
        bar.close()
    return loop, losses, val_losses




# --- divergence, made visible ---------------------------------------------------------------


class DivergenceWarning(RuntimeWarning):
    """Training stopped because the training loss became NaN or infinite.

    Issued by :func:`bpjax.fit` and :func:`bpjax.sweep` (called eagerly) unless they are given
    ``on_divergence="ignore"``. It is an ordinary warning category: ``warnings.simplefilter(
    "error", bp.DivergenceWarning)`` turns it into an exception, ``"ignore"`` silences it
    everywhere.
    """


def check_on_divergence(on_divergence) -> None:
    """``on_divergence`` must be ``"warn"`` or ``"ignore"``."""
    if not isinstance(on_divergence, str) or on_divergence not in ("warn", "ignore"):
        raise ValueError(f"on_divergence must be 'warn' or 'ignore', got {on_divergence!r}")


def check_progress(progress) -> None:
    """``progress`` must be ``True``, ``False`` or a dict of keyword arguments for ``tqdm``."""
    if not isinstance(progress, (bool, np.bool_, dict)):
        raise TypeError(f"progress must be True, False or a dict of tqdm keyword arguments, got "
                        f"{type(progress).__name__}: {progress!r:.40}")


def _listed(values, most=8) -> str:
    text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:most])
    return f"[{text}{', …' if len(values) > most else ''}]"


def warn_divergence(r: FitResult, on_divergence: str, learning_rate, who: str,
                    stacklevel: int = 3) -> None:
    """Warns (:class:`DivergenceWarning`) when ``r`` diverged, naming the epoch and what to try.

    ``r`` holds concrete values: Python scalars from :func:`bpjax.fit`, arrays with a leading
    model axis from :func:`bpjax.sweep`; ``learning_rate`` is the one the caller gave.
    """
    if on_divergence == "ignore":
        return
    diverged = to_host(r.diverged)  # a collective for a sweep split across hosts
    if not diverged.any():
        return
    rate = ("learning rate (learning_rate=, or the optimizer's own)" if learning_rate is None
            else "learning_rate")
    advice = (f"Try a smaller {rate}, or standardise X and Y (large targets need small steps). "
              f"on_divergence='ignore' silences this warning; result.diverged says it either way.")
    if diverged.ndim == 0:
        t, best = int(r.diverged_epoch), int(r.best_epoch)
        eta = "" if learning_rate is None else f" (learning_rate={float(learning_rate):.4g})"
        kept = "the initial ones" if best == 0 else f"those after epoch {best}"
        message = (
            f"{who}: the training loss became NaN or infinite in epoch {t} of this call{eta}, "
            f"so training stopped there. That epoch is not kept: the weights returned are "
            f"{kept} (result.best_epoch), and len(result.losses) == {int(r.epochs_run)}. "
            f"{advice}")
    else:
        models = np.flatnonzero(diverged)
        epochs = to_host(r.diverged_epoch)[models]
        eta = ""
        if learning_rate is not None and np.ndim(learning_rate) == 1:
            rates = np.asarray(learning_rate)[models]
            eta = f" with learning_rate {_listed([float(v) for v in rates])}"
        elif learning_rate is not None:
            eta = f" with learning_rate={float(learning_rate):.4g}"
        message = (
            f"{who}: {len(models)} of {diverged.size} models diverged{eta}: models "
            f"{_listed(models.tolist())} in epochs {_listed(epochs.tolist())} (the training "
            f"loss became NaN or infinite). Each stopped there and returned the weights after "
            f"its last finite epoch (result.best_epoch). {advice}")
    warnings.warn(message, DivergenceWarning, stacklevel=stacklevel)
