"""Training: Algorithm 1, and the gradient-descent family it belongs to.

| paper (Algorithm 1)                                 | code                                  |
| --------------------------------------------------- | ------------------------------------- |
| line 2: ``w^{l,(0)}_jk ← random()``                 | :func:`bpjax.init`                    |
| line 3: ``for t = 1 .. T`` ("or until convergence") | ``epochs``; ``tol``, ``patience``     |
| line 4: ``for i ∈ [N]``, in dataset order           | a jitted ``lax.scan`` over samples    |
| line 6: ``w ← w − (η/N) ∂L/∂w(x_i)``                | :func:`_sample_sgd_step`              |
| ``η > 0``, the gradient step                        | ``learning_rate``                     |
| §1.3.1 note: "clamp" weights                        | ``frozen``, see :mod:`bpjax.clamping` |

``∂L/∂w(x_i)`` is sample ``i``'s term of the gradient without the ``1/N`` (``DESIGN.md``),
computed by the hand-written backward pass of :mod:`bpjax.backward`, never by autodiff.

**One family of steps.** Write ``L = Σ_B L_B``, where ``L_B = 1/(2N) Σ_{i∈B} ‖φ_θ(x_i) − y_i‖²``
holds the terms of loss (1) of the samples in a batch ``B``. Every step, whatever the batch
size, follows the gradient of its batch's share of the loss,

    G_B = ∂L_B/∂w = (1/N) Σ_{i∈B} ∂L/∂w(x_i),         w ← w − η G_B,

so that over one epoch the ``G_B`` add up to ``∂L/∂w``: one epoch moves the weights by about one
full-batch step of size ``η``, for every batch size.

* ``batch_size=1``: ``G_B = (1/N) ∂L/∂w(x_i)``, Algorithm 1 exactly.
* ``batch_size=B``: ``⌈N/B⌉`` steps per epoch; when ``B`` does not divide ``N`` the last batch
  holds the remaining ``N mod B`` samples (every sample is used exactly once per epoch).
* ``batch_size=None``: one step of exact gradient descent on ``L`` per epoch.

**Optimizers.** With ``optimizer=None`` the step is the plain one above, as in the paper.
Any optax ``GradientTransformation`` can replace it: it is fed ``G_B`` and returns updates
``u`` in optax's convention (added to the weights), and ``learning_rate`` scales them::

    u, state ← optimizer.update(G_B, state, w),        w ← w + η u.

``learning_rate`` defaults to 1 when an optimizer is given, so ``optimizer=optax.adam(1e-3)``
alone trains at Adam's own rate. To vary the rate between calls without recompiling, build
the optimizer with a rate of 1 — ``optax.adam(1.0)``, ``optax.adamw(1.0, weight_decay=1e-4)``,
``optax.sgd(1.0, momentum=0.9)`` — and pass ``η`` to ``fit``: ``optimizer=optax.sgd(1.0)`` is
then the plain step. (Giving both, ``optax.adam(1e-3)`` and ``learning_rate=1e-3``, multiplies
them.) ``learning_rate`` is a traced value, so
changing it never recompiles; so are the data, ``tol``, ``patience`` and ``min_delta``, and
the number of epochs only sets how many times the compiled loop runs. The optimizer itself is
part of what is compiled: reuse one optimizer object across calls, and put hyper-parameters
you want to vary without recompiling in its state with ``optax.inject_hyperparams``.

**Clamping.** ``frozen[l-1][j, k] == True`` keeps ``w^l_jk`` bit for bit: the mask is applied
to the final update, after the optimizer, so momentum and weight decay cannot move a clamped
weight. Structural zeros (``bias=False``, absent connections) never change either.

**Speed.** The per-sample step is one fused jitted body on vectors: forward pass, deltas
(equations (2)-(3) from :mod:`bpjax.backward`) and rank-1 updates, with the biases kept apart
from the other weights. A large layer (``≥ 4096`` weights, none of them clamped or structural
zeros) defers its rank-1 updates over blocks of 16 samples and applies them as one matrix
product; every sample still sees the weights left by the one before (see :class:`_DeferredW`),
so this is Algorithm 1 up to floating-point rounding, checked against plain loops to ``1e-10``
in float64. On a CPU the per-sample loop is compiled to run on the calling thread (see
``_SEQUENTIAL_CPU``): its steps are too small and too sequential to share between cores.
(Called inside your own ``jax.jit``, ``fit`` is compiled with that function's options.)

**Many devices.** With ``mesh=``, every batch is split over the devices of the mesh axis
``data_axis`` and the weights are replicated; ``jax.jit``'s SPMD partitioner adds the devices'
shares of ``G_B`` with one all-reduce per step (:mod:`bpjax.distributed`).

**Stopping.** Training runs ``epochs`` epochs unless it stops earlier, inside the jitted loop:

* ``tol``: once the training loss (1) is ``≤ tol`` ("until convergence");
* ``patience``: once the monitored loss — the validation loss if ``validation`` is given,
  else the training loss — has not improved by more than ``min_delta`` for ``patience``
  epochs. With ``patience`` the returned weights are always the best ones seen (the initial
  ones included), together with the optimizer state they had;
* divergence: a non-finite training loss stops training at once; the returned weights are the
  last finite ones (those before the failing epoch, or the best ones with ``patience``).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax.backward import _deltas, _gradients, _sample_gradients
from bpjax.checkpoint import Checkpoint
from bpjax.data import as_dtype, as_inputs, as_targets, check_finite, float_dtype
from bpjax.distributed import data_parallel, on_mesh, shard_batches, to_host
from bpjax.forward import join, layer_inputs, propagate, propagate_split, split
from bpjax.loss import loss_of_params
from bpjax.network import Network
from bpjax.params import Params, check_layers, check_params, structural

__all__ = ["FitResult", "fit"]

_CHUNK = 64  # epochs per call of the compiled loop (the size of its loss buffer)
_BLOCK = 16  # samples whose rank-1 updates of a large layer are deferred, then applied at once
_DEFER_MIN = 4096  # a layer's updates are deferred when its W^l has at least this many entries
_TINY = 40  # networks with at most this many weights: XLA compiles their whole per-sample
# loop into one kernel, which unrolling the scan would prevent (a 10x loss)
_PROGRESS_INTERVAL = 0.5  # seconds between progress-bar refreshes


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the trained weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      opt_state: the optimizer state that goes with ``params`` (``optax.EmptyState()`` for the
        plain step); pass the result back to :func:`fit` to resume.
      losses: loss (1) on the training set after each epoch, shape ``(epochs_run,)``: this is
        ``(epochs,)`` unless training stopped early.
      val_losses: loss (1) on the validation set after each epoch, same shape, or ``None``.
      epoch: the number of epochs trained in total, counting those of a resumed result.
      epochs_run: the number of epochs run by this call.
      best_epoch: the epoch of this call (1-based; 0 for the initial weights) whose weights
        ``params`` holds: ``epochs_run`` normally, the best epoch with ``patience``, the last
        finite one after divergence.
      converged: whether the training loss reached ``tol``.
      stopped_early: whether ``patience`` ran out.
      diverged: whether the training loss became NaN or infinite.
      diverged_epoch: the epoch of this call (1-based) whose loss was not finite; 0 if none.

    Under ``jax.jit`` or ``jax.vmap`` (and from :func:`bpjax.sweep`) the scalars are arrays
    and ``losses`` has shape ``(epochs,)``, padded with NaN after the last epoch run.
    """

    params: Params
    opt_state: Any
    losses: jax.Array
    val_losses: jax.Array | None
    epoch: int
    epochs_run: int
    best_epoch: int
    converged: bool
    stopped_early: bool
    diverged: bool
    diverged_epoch: int


# --- the compiled loop -----------------------------------------------------------------------


class _Config(NamedTuple):
    """What the compiled loop is specialised on (hashable, static)."""

    N: int  # samples
    batch: int  # B (N for full batch)
    steps: int  # ⌈N/B⌉ steps per epoch
    shuffle: bool
    validate: bool
    restore_best: bool  # patience given: keep the best weights
    masked: bool  # some weights are frozen or structural zeros
    batch_sharding: Any = None  # data parallel: how each batch is split (bpjax.distributed)


class _Data(NamedTuple):
    """The traced inputs that stay fixed during training."""

    X: jax.Array  # (N, D)
    Y: jax.Array  # (N, d)
    X_val: jax.Array | None
    Y_val: jax.Array | None
    trainable: tuple | None  # per layer: structure & ~frozen (bool), None if all trainable
    key: jax.Array | None  # shuffling key


class _Hyper(NamedTuple):
    """The traced hyper-parameters (changing them never recompiles)."""

    eta: jax.Array  # η
    tol: jax.Array  # -inf when not given
    patience: jax.Array  # int32
    min_delta: jax.Array


class _Loop(NamedTuple):
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


def _apply(w, step, mask):
    """``w + step`` where ``mask`` (a trainable weight), ``w`` bit for bit elsewhere."""
    new = w + step
    return new if mask is None else jnp.where(mask, new, w)


class _DeferredW:
    """A layer's weights ``w^l_{j≥1,k}`` in the middle of a block of samples: ``W + Aᵀ B``.

    Algorithm 1 changes every weight after every sample by a rank-1 term,
    ``−(η/N) φ_in(x_i) δ^l(x_i)ᵀ``. Inside a block the terms are kept as the rows of
    ``A = −(η/N) [φ_in(x_i)]`` ``(block, fan_in)`` and ``B = [δ^l(x_i)]`` ``(block, N_l)`` (zero
    rows for samples to come), and the current weights are applied to vectors without being
    formed — the same numbers as the updated matrix, up to rounding. One matrix product folds
    them into ``W`` at the end of the block: the large matrix is read twice per sample and
    written once per block, instead of read three times and written once per sample.
    """

    __slots__ = ("W", "A", "B")

    def __init__(self, W, A, B):
        self.W, self.A, self.B = W, A, B

    def __rmatmul__(self, h):  # a^l = φ_in (W + Aᵀ B)
        return h @ self.W + (self.A @ h) @ self.B

    def __matmul__(self, d):  # equation (3): (W + Aᵀ B) δ
        return self.W @ d + (self.B @ d) @ self.A


def _sample_sgd_step(net, eta_over_N, masks, theta, sample):
    """Algorithm 1, line 6, for one sample: ``w ← w − (η/N) ∂L/∂w(x_i)``, on vectors.

    ``theta = (w0, W, A, B)``: the biases and weights of :func:`bpjax.forward.split`, and for
    each layer whose updates are deferred the factors of :class:`_DeferredW` (else ``None``).
    The forward pass, the hand-written deltas and the updates are fused in one step.
    """
    w0, W, A, B = theta
    x, y, i = sample  # i: the sample's place in its block
    weights = tuple(w if a is None else _DeferredW(w, a, b) for w, a, b in zip(W, A, B))
    tr = propagate_split(net, w0, weights, x)
    delta = _deltas(net, weights, tr, tr.phi[-1] - y)  # sample i's term, without the 1/N
    g0, gW = _sample_gradients(net, tr, delta)
    m0, mW = masks
    w0 = tuple(_apply(w, -eta_over_N * g, m) for w, g, m in zip(w0, g0, m0))
    W, A, B = list(W), list(A), list(B)
    for l in range(1, net.depth + 1):
        if A[l - 1] is None:
            W[l - 1] = _apply(W[l - 1], -eta_over_N * gW[l - 1], mW[l - 1])
        else:  # gW[l-1] = φ_in ⊗ δ^l, kept as its two factors
            phi_in = layer_inputs(net, tr.phi, l)
            A[l - 1] = jax.lax.dynamic_update_index_in_dim(A[l - 1], -eta_over_N * phi_in, i, 0)
            B[l - 1] = jax.lax.dynamic_update_index_in_dim(B[l - 1], delta[l], i, 0)
    return (w0, tuple(W), tuple(A), tuple(B)), None


def _algorithm1_epoch(net, eta_over_N, masks, params, X, Y):
    """One epoch of Algorithm 1 with plain SGD: every sample in order, one step each.

    Large layers defer their rank-1 updates over blocks of ``_BLOCK`` samples (see
    :class:`_DeferredW`); the ``N mod _BLOCK`` last samples, and small networks, step directly.
    """
    masks = masks if masks is not None else (None,) * net.depth
    m0 = tuple(None if m is None else m[0] for m in masks)
    mW = tuple(None if m is None else m[1:] for m in masks)
    step = partial(_sample_sgd_step, net, eta_over_N, (m0, mW))
    w0, W = split(params)
    none = (None,) * net.depth
    deferred = tuple(m is None and w.shape[0] * w.shape[1] >= _DEFER_MIN for w, m in zip(W, mW))
    N = X.shape[0]
    blocks = N // _BLOCK if any(deferred) else 0
    if blocks:
        def block(theta, xy):
            w0, W = theta
            A = tuple(jnp.zeros((_BLOCK, w.shape[0]), w.dtype) if d else None
                      for w, d in zip(W, deferred))
            B = tuple(jnp.zeros((_BLOCK, w.shape[1]), w.dtype) if d else None
                      for w, d in zip(W, deferred))
            (w0, W, A, B), _ = jax.lax.scan(step, (w0, W, A, B), (*xy, jnp.arange(_BLOCK)),
                                            unroll=2)
            W = tuple(w if a is None else w + a.T @ b for w, a, b in zip(W, A, B))
            return (w0, W), None

        n = blocks * _BLOCK
        Xb = X[:n].reshape(blocks, _BLOCK, X.shape[1])
        Yb = Y[:n].reshape(blocks, _BLOCK, Y.shape[1])
        (w0, W), _ = jax.lax.scan(block, (w0, W), (Xb, Yb))
        X, Y = X[n:], Y[n:]
    if X.shape[0]:
        unroll = 1 if net.num_params <= _TINY else 2
        zeros = jnp.zeros(X.shape[0], jnp.int32)
        (w0, W, _, _), _ = jax.lax.scan(step, (w0, W, none, none), (X, Y, zeros), unroll=unroll)
    return join(w0, W)


def _batch_gradient(net, params, X_B, Y_B, m_B, N):
    """``G_B = ∂L_B/∂w = (1/N) Σ_{i∈B} ∂L/∂w(x_i)`` for a batch (``m_B`` masks padding)."""
    tr = propagate(net, params, X_B)
    r = tr.phi[-1] - Y_B
    g = r / N if m_B is None else r * (m_B[:, None] / N)  # ∂L_B/∂φ^L
    return _gradients(net, tr, _deltas(net, params, tr, g, bias_row=True))


def _sample_gradient(net, params, x, y, N):
    """``G_B = (1/N) ∂L/∂w(x_i)`` for one sample, shaped like ``params``."""
    w0, W = split(params)
    tr = propagate_split(net, w0, W, x)
    g0, gW = _sample_gradients(net, tr, _deltas(net, W, tr, tr.phi[-1] - y))
    return jax.tree.map(lambda g: g / N, join(g0, gW))


def _descend(optimizer, eta, masks, params, opt_state, G):
    """``w ← w − η G`` (optimizer None), or ``w ← w + η u`` with the optimizer's ``u``."""
    if optimizer is None:
        steps = jax.tree.map(lambda g: -eta * g, G)
    else:
        u, opt_state = optimizer.update(G, opt_state, params)
        steps = jax.tree.map(lambda v, w: (eta * v).astype(w.dtype), u, params)
    if masks is None:
        masks = (None,) * len(params)
    return tuple(_apply(w, s, m) for w, s, m in zip(params, steps, masks)), opt_state


def _epoch_data(config, data, epoch):
    """The epoch's samples in order: shuffled with ``fold_in(key, epoch)`` if asked, padded to
    ``steps × B`` with masked samples when ``B`` does not divide ``N``, then batched."""
    X, Y = data.X, data.Y
    if config.shuffle:
        perm = jax.random.permutation(jax.random.fold_in(data.key, epoch), config.N)
        X, Y = X[perm], Y[perm]
    if config.batch == 1:
        return X, Y, None
    pad = config.steps * config.batch - config.N
    m = None
    if pad:
        m = jnp.concatenate([jnp.ones(config.N, X.dtype), jnp.zeros(pad, X.dtype)])
        X = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)])
        Y = jnp.concatenate([Y, jnp.zeros((pad, Y.shape[1]), Y.dtype)])
        m = m.reshape(config.steps, config.batch)
    X = X.reshape(config.steps, config.batch, X.shape[-1])
    Y = Y.reshape(config.steps, config.batch, Y.shape[-1])
    if config.batch_sharding is not None:  # data parallel: every batch split over the devices
        X, Y, m = shard_batches(config.batch_sharding, X, Y, m)
    return X, Y, m


def _epoch(net, optimizer, config, data, hyper, params, opt_state, epoch):
    """One epoch: ``⌈N/B⌉`` steps, each on its batch's share of the gradient."""
    X, Y, m = _epoch_data(config, data, epoch)
    N = config.N
    masks = data.trainable if config.masked else None
    if config.batch == 1 and optimizer is None:  # Algorithm 1: the fused per-sample step
        return _algorithm1_epoch(net, hyper.eta / N, masks, params, X, Y), opt_state

    def step(carry, batch):
        params, opt_state = carry
        if config.batch == 1:
            G = _sample_gradient(net, params, batch[0], batch[1], N)
        else:
            G = _batch_gradient(net, params, *batch, N)
        return _descend(optimizer, hyper.eta, masks, params, opt_state, G), None

    batches = (X, Y) if config.batch == 1 else (X, Y, m)
    unroll = 2 if config.batch == 1 and net.num_params > _TINY else 1
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches, unroll=unroll)
    return params, opt_state


def _loop(net, optimizer, config, loop, data, hyper, n):
    """Runs up to ``n`` epochs, fewer if training stops; losses go to ``loop.losses[count]``."""

    def cond(s):
        stop = s.converged | s.stopped_early | s.diverged
        return (s.count < n) & ~stop

    nan = jnp.full_like(loop.losses, jnp.nan)
    loop = loop._replace(count=jnp.zeros_like(loop.count), losses=nan, val_losses=nan)

    def body(s):
        params, opt_state = _epoch(net, optimizer, config, data, hyper, s.params, s.opt_state,
                                   s.epoch)
        loss = loss_of_params(net, params, data.X, data.Y)
        finite = jnp.isfinite(loss)
        # After divergence, keep the weights from before the failing epoch.
        params = _select(finite, params, s.params)
        opt_state = _select(finite, opt_state, s.opt_state)
        done = s.done + 1
        val = loss_of_params(net, params, data.X_val, data.Y_val) if config.validate else loss
        monitored = val if config.validate else loss
        improved = finite & (monitored < s.best_loss - hyper.min_delta)
        best_loss = jnp.where(improved, monitored, s.best_loss)
        since_best = jnp.where(improved, 0, s.since_best + 1)
        if config.restore_best:
            best_params = _select(improved, params, s.best_params)
            best_opt_state = _select(improved, opt_state, s.best_opt_state)
            best_epoch = jnp.where(improved, done, s.best_epoch)
            stopped_early = since_best >= hyper.patience
        else:
            best_params, best_opt_state = None, None
            best_epoch = jnp.where(finite, done, s.best_epoch)
            stopped_early = s.stopped_early
        return _Loop(
            params=params,
            opt_state=opt_state,
            best_params=best_params,
            best_opt_state=best_opt_state,
            best_loss=best_loss,
            best_epoch=best_epoch,
            since_best=since_best,
            epoch=s.epoch + 1,
            done=done,
            count=s.count + 1,
            losses=s.losses.at[s.count].set(loss),
            val_losses=s.val_losses.at[s.count].set(val) if config.validate else s.val_losses,
            converged=finite & (loss <= hyper.tol),
            stopped_early=stopped_early & finite,
            diverged=~finite,
        )

    return jax.lax.while_loop(cond, body, loop)


_LOOP_STATIC = dict(static_argnames=("net", "optimizer", "config"), donate_argnames=("loop",))
_loop_jit = jax.jit(_loop, **_LOOP_STATIC)

# How XLA:CPU compiles a loop of per-sample steps (fit and sweep with batch_size=1), measured
# on 2 cores (benchmarks W1, W2, W4):
# * XLA:CPU runs independent operations, and large elementwise ones split in parts, on a pool
#   of threads. A per-sample step is a long chain of small operations on weights that stay in
#   one core's cache: handing parts of it to another core costs more than it saves. Without
#   parallel task assignment the step stays on the calling thread (W1: 20 → 12 µs a step).
# * Copy insertion with region analysis drops the copies XLA otherwise makes of the carried
#   factors of _DeferredW in every step.
# * YNNPACK fusions cost ~0.1 ms to launch: 7x the whole loss (1) of a small network each epoch.
# * 512-bit vectors where the CPU has them: the matrix-vector products of a step (W1: -15%).
_SEQUENTIAL_CPU = {
    "xla_disable_hlo_passes": "cpu-parallel-task-assigner",
    "xla_cpu_copy_insertion_use_region_analysis": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_prefer_vector_width": 512,
}
_loop_sequential_jit = jax.jit(_loop, compiler_options=_SEQUENTIAL_CPU, **_LOOP_STATIC)


def _sequential(config, data) -> bool:
    """Whether the loop takes per-sample steps on a CPU (compile it with ``_SEQUENTIAL_CPU``)."""
    return config.batch == 1 and all(d.platform == "cpu" for d in data.X.devices())


# --- checking and preparing the inputs -------------------------------------------------------


def _is_traced(*trees) -> bool:
    return any(isinstance(v, jax.core.Tracer) for t in trees for v in jax.tree.leaves(t))


def _scalar(value, name, *, integer=False, minimum=None, strict=False, allow_none=False):
    """Checks a hyper-parameter given as a number; returns it (tracers pass unchecked)."""
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


def _check_learning_rate(eta, models=None):
    """η > 0 and finite: a number, or for a sweep an array of shape ``(M,)``."""
    if isinstance(eta, jax.core.Tracer):
        return eta
    if models is not None and np.ndim(eta) == 1:
        v = np.asarray(eta)
        if v.shape != (models,):
            raise ValueError(
                f"learning_rate must be a number or have shape (M,) = ({models},), "
                f"got shape {v.shape}")
        if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"learning_rate must be finite and > 0 for every model, got {v}")
        return eta
    return _scalar(eta, "learning_rate", minimum=0, strict=True)


def _check_frozen(net: Network, frozen) -> Params | None:
    """``frozen`` must be a tuple of boolean arrays shaped like ``params``."""
    if frozen is None:
        return None
    return check_layers(
        net, frozen, name="frozen", boolean=True, expected="the shape of params[{i}],",
        what="boolean arrays shaped like params (see bpjax.frozen_mask)")


def _check_optimizer(optimizer):
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1.0)) or None "
            f"for plain SGD, got {type(optimizer).__name__}")


def _init_state(optimizer, params):
    return optax.EmptyState() if optimizer is None else optimizer.init(params)


def _check_opt_state(optimizer, opt_state, params):
    """``opt_state`` must have the structure, shapes and dtypes that ``optimizer.init`` makes."""
    expected = jax.eval_shape(lambda p: _init_state(optimizer, p), params)
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
    return jax.tree.map(lambda v, e: jnp.asarray(v, e.dtype), opt_state, expected)


def _host(v, dtype):
    """A hyper-parameter as a numpy array (handed to the compiled loop with its arguments,
    without a dispatch of its own), or as a JAX array if it is one already (or traced)."""
    return jnp.asarray(v, dtype) if isinstance(v, jax.Array) else np.asarray(v, dtype)


class _Prepared(NamedTuple):
    params: Params
    opt_state: Any
    epoch: Any
    data: _Data
    hyper: _Hyper
    config: _Config


def _prepare(net, params, X, Y, *, learning_rate, epochs, batch_size, optimizer, frozen,
             opt_state, shuffle, validation, tol, patience, min_delta, models=None):
    """Checks every input before any work, and builds the loop's inputs.

    With ``models = M`` (a sweep), ``params`` leaves carry a leading axis of size ``M``.
    """
    if not isinstance(net, Network):
        raise TypeError(f"expected a bpjax.Network, got {type(net).__name__}")
    epoch = 0
    if isinstance(params, (FitResult, Checkpoint)):
        if opt_state is not None:
            raise ValueError("pass either a previous result or opt_state, not both")
        params, opt_state, epoch = params.params, params.opt_state, params.epoch
    _check_optimizer(optimizer)
    epochs = _scalar(epochs, "epochs", integer=True, minimum=0)
    if isinstance(epochs, jax.core.Tracer):
        raise TypeError("epochs must be a Python int (it sets the length of the loss history)")
    epochs = int(epochs)

    if models is None:
        params = check_params(net, params)
    else:
        params = _check_models(net, params, models)
    X, single = as_inputs(net, X)
    N = X.shape[0]
    Y = as_targets(net, Y, N, single)
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
    frozen = _check_frozen(net, frozen)

    X_val = Y_val = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(
                f"validation must be a pair (X_val, Y_val), got {type(validation).__name__}")
        X_val, single_val = as_inputs(net, validation[0])
        Y_val = as_targets(net, validation[1], X_val.shape[0], single_val)
        X_val, Y_val = jnp.asarray(X_val, dtype), jnp.asarray(Y_val, dtype)
    check_finite(X=X, Y=Y, X_val=X_val, Y_val=Y_val)
    for l, w in enumerate(params, start=1):
        check_finite(**{f"params[{l - 1}] (layer {l})": w})

    if shuffle is not None and not (
            isinstance(shuffle, jax.Array) and jnp.issubdtype(shuffle.dtype, jax.dtypes.prng_key)):
        raise TypeError(
            f"shuffle must be a key from jax.random.key(seed) (or None to keep the dataset "
            f"order), got {type(shuffle).__name__}")

    params = tuple(as_dtype(w, dtype) for w in params)
    # The weights training may change: structure & ~frozen, per layer; None where all may.
    trainable = []
    for l in range(1, net.depth + 1):
        m = None if net.is_dense(l) else jnp.asarray(net.structure(l))
        if frozen is not None:
            free = jnp.logical_not(frozen[l - 1])
            m = free if m is None else jnp.logical_and(m, free)
        trainable.append(m)
    masked = any(m is not None for m in trainable)
    trainable = tuple(trainable) if masked else None
    if models is None:
        params = structural(net, params)
        if opt_state is None:
            opt_state = _init_state(optimizer, params)
        elif not _is_traced(opt_state):
            opt_state = _check_opt_state(optimizer, opt_state, params)
    else:
        params = jax.vmap(partial(structural, net))(params)
        if opt_state is None:
            opt_state = jax.vmap(partial(_init_state, optimizer))(params)
        else:
            opt_state = jax.vmap(partial(_check_opt_state, optimizer))(opt_state, params) \
                if _is_traced(opt_state) else _check_opt_state_many(optimizer, opt_state, params)

    steps = -(-N // B)
    config = _Config(N=N, batch=B, steps=steps, shuffle=shuffle is not None,
                     validate=validation is not None, restore_best=patience is not None,
                     masked=masked)
    data = _Data(as_dtype(X, dtype), as_dtype(Y, dtype), X_val, Y_val, trainable, shuffle)
    hyper = _Hyper(
        eta=_host(eta, dtype),
        tol=_host(-np.inf if tol is None else tol, dtype),
        patience=_host(0 if patience is None else patience, np.int32),
        min_delta=_host(min_delta, dtype),
    )
    return _Prepared(params, opt_state, epoch, data, hyper, config), epochs


def _check_models(net, params, models):
    """Sweep params: every leaf ``(M, 1 + fan_in, N_l)``."""
    return check_layers(net, params, what="arrays with a leading model axis",
                        leading=(models,), expected="(M, 1 + fan_in, N_l) =")


def _check_opt_state_many(optimizer, opt_state, params):
    first = jax.tree.map(lambda v: v[0], opt_state)
    _check_opt_state(optimizer, first, jax.tree.map(lambda v: v[0], params))
    expected = jax.eval_shape(jax.vmap(partial(_init_state, optimizer)), params)
    return jax.tree.map(lambda v, e: jnp.asarray(v, e.dtype), opt_state, expected)


def _initial_loop(net, config, data, params, opt_state, epoch, chunk):
    """The loop state before the first epoch of a fit call."""
    dtype = params[0].dtype
    best_loss = jnp.asarray(jnp.inf, dtype)
    if config.restore_best:  # the initial weights are candidates too
        X, Y = (data.X_val, data.Y_val) if config.validate else (data.X, data.Y)
        best_loss = loss_of_params(net, params, X, Y)
        best_loss = jnp.where(jnp.isfinite(best_loss), best_loss, jnp.inf)
    copy = partial(jax.tree.map, jnp.copy)
    return _Loop(
        params=copy(params),
        opt_state=copy(opt_state),
        best_params=copy(params) if config.restore_best else None,
        best_opt_state=copy(opt_state) if config.restore_best else None,
        best_loss=best_loss,
        best_epoch=jnp.asarray(0, jnp.int32),
        since_best=jnp.asarray(0, jnp.int32),
        epoch=jnp.asarray(epoch, jnp.int32),
        done=jnp.asarray(0, jnp.int32),
        count=jnp.asarray(0, jnp.int32),
        losses=jnp.full(chunk, jnp.nan, dtype),
        val_losses=jnp.full(chunk, jnp.nan, dtype),
        converged=jnp.asarray(False),
        stopped_early=jnp.asarray(False),
        diverged=jnp.asarray(False),
    )


_initial_loop_jit = jax.jit(_initial_loop, static_argnames=("net", "config", "chunk"))


def _result(config, loop, losses, val_losses) -> FitResult:
    """The result from the final loop state (arrays; a Python loop makes them scalars)."""
    params, opt_state = loop.params, loop.opt_state
    if config.restore_best:
        params, opt_state = loop.best_params, loop.best_opt_state
    return FitResult(
        params=params,
        opt_state=opt_state,
        losses=losses,
        val_losses=val_losses if config.validate else None,
        epoch=loop.epoch,
        epochs_run=loop.done,
        best_epoch=loop.best_epoch,
        converged=loop.converged,
        stopped_early=loop.stopped_early,
        diverged=loop.diverged,
        diverged_epoch=jnp.where(loop.diverged, loop.done, 0),
    )


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
            return _CHUNK if self.bar is None else 1
        return int(np.clip(_PROGRESS_INTERVAL / max(seconds_per_epoch, 1e-9), 1, _CHUNK))

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


def _drive(run, loop, epochs, progress, desc):
    """Calls the compiled loop until ``epochs`` epochs ran or training stopped.

    ``run(loop, n)`` runs up to ``n`` more epochs. Returns the final loop state and the loss
    histories (numpy, ``(..., epochs_run)``, NaN where a model of a sweep had stopped).
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


# --- the public function ---------------------------------------------------------------------


def fit(
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
    data_axis: str = "data",
) -> FitResult:
    """Trains ``net`` by gradient descent with the hand-written gradients: Algorithm 1.

    With the defaults this is Algorithm 1 exactly: for each epoch, for each sample ``x_i`` in
    dataset order, ``w ← w − (η/N) ∂L/∂w(x_i)``. See the module docstring for the family of
    steps (minibatch, full batch), optimizers, clamping and stopping.

    Args:
      net: the network.
      params: the initial weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``; or a
        previous :class:`FitResult` (or :class:`bpjax.Checkpoint`) to resume from its weights,
        optimizer state and epoch count.
      X: inputs ``(N, D)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``).
      learning_rate: ``η > 0``; required with ``optimizer=None``. With an optimizer it scales
        the optimizer's updates and defaults to 1, so ``optimizer=optax.adam(1e-3)`` alone
        trains at Adam's rate 1e-3.
      epochs: the number of epochs ``T ≥ 0`` (passes over the data), at most.
      batch_size: ``1`` (Algorithm 1), ``B`` in ``1..N`` (minibatches; the last one holds
        ``N mod B`` samples when ``B`` does not divide ``N``), or ``None`` (full batch).
      optimizer: an optax ``GradientTransformation``, or ``None`` for the plain step of the
        paper. Either give it its own rate (``optax.adam(1e-3)``, no ``learning_rate``), or
        build it with rate 1 (``optax.adam(1.0)``) and pass ``learning_rate``, which can then
        change between calls without recompiling.
      frozen: optional boolean masks shaped like ``params``; ``True`` clamps ``w^l_jk`` (see
        :func:`bpjax.frozen_mask` and :func:`bpjax.clamp`).
      opt_state: the optimizer state to start from (default ``optimizer.init(params)``).
      shuffle: a ``jax.random.key``: reshuffle the samples every epoch (epoch ``t`` uses
        ``fold_in(key, t)``); ``None`` keeps the dataset order.
      validation: optional ``(X_val, Y_val)``; its loss (1) is recorded after each epoch and
        is what ``patience`` monitors.
      tol: stop once the training loss (1) is ``≤ tol``.
      patience: stop once the monitored loss has not improved by more than ``min_delta`` for
        this many epochs, and return the best weights.
      min_delta: the improvement ``patience`` asks for, ``≥ 0``.
      progress: show a tqdm progress bar (refreshed about twice a second); a dict is passed
        to ``tqdm`` as keyword arguments.
      mesh: a :class:`jax.sharding.Mesh`: train data parallel, every batch split over the
        devices of its axis ``data_axis``, the weights replicated (see
        :mod:`bpjax.distributed`). The batch size (``N`` for the full batch) must be a
        multiple of that axis's size; ``batch_size=1`` needs an axis of one device.
      data_axis: the name of the mesh axis that splits the batches.

    Returns:
      A :class:`FitResult`; with a mesh, ``params`` and ``opt_state`` are replicated on it.

    Raises:
      TypeError, ValueError: a bad input, before any work: ``learning_rate ≤ 0`` or not
        finite, ``epochs < 0``, ``batch_size`` outside ``1..N``, NaN or Inf in the data or
        weights, ``frozen`` not shaped like ``params``, ``X`` and ``Y`` of different lengths,
        an ``opt_state`` that does not fit the optimizer; with a mesh, no axis
        ``data_axis`` or a batch size that does not split evenly over it.
    """
    prep, epochs = _prepare(
        net, params, X, Y, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, frozen=frozen, opt_state=opt_state, shuffle=shuffle,
        validation=validation, tol=tol, patience=patience, min_delta=min_delta)
    if mesh is not None:  # every batch split over the mesh: see bpjax.distributed
        prep = data_parallel(prep, mesh, data_axis)
    config, data, hyper = prep.config, prep.data, prep.hyper

    if _is_traced(prep.params, data, hyper, prep.opt_state):
        # Under jax.jit / jax.vmap: one traced loop over all the epochs, NaN-padded histories.
        loop = _initial_loop(net, config, data, prep.params, prep.opt_state, prep.epoch,
                             chunk=epochs)
        loop = _loop(net, optimizer, config, loop, data, hyper, epochs)
        return _result(config, loop, loop.losses, loop.val_losses)

    loop_jit = _loop_sequential_jit if _sequential(config, data) else _loop_jit

    def run(loop, n):
        return loop_jit(net, optimizer, config, loop, data, hyper, jnp.asarray(n, jnp.int32))

    loop = _initial_loop_jit(net, config, data, prep.params, prep.opt_state, prep.epoch,
                             chunk=_CHUNK)
    loop, losses, val_losses = _drive(run, loop, epochs, progress, "fit")
    dtype = prep.params[0].dtype
    # device_put, not jnp.asarray: a history of a new length must not compile anything
    losses = jax.device_put(np.concatenate(losses) if losses else np.zeros(0, dtype))
    val_losses = jax.device_put(np.concatenate(val_losses) if val_losses else np.zeros(0, dtype))
    r = _result(config, loop, losses, val_losses)
    if mesh is not None:
        r = r._replace(params=on_mesh(r.params, mesh), opt_state=on_mesh(r.opt_state, mesh))
    return r._replace(
        epoch=int(r.epoch), epochs_run=int(r.epochs_run), best_epoch=int(r.best_epoch),
        converged=bool(r.converged), stopped_early=bool(r.stopped_early),
        diverged=bool(r.diverged), diverged_epoch=int(r.diverged_epoch))
