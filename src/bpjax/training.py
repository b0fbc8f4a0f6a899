"""Training: Algorithm 1, and the gradient-descent family it belongs to.

| paper (Algorithm 1)                                 | code                                  |
| --------------------------------------------------- | ------------------------------------- |
| line 2: ``w^{l,(0)}_jk ← random()``                 | :func:`bpjax.init`                    |
| line 3: ``for t = 1 .. T`` ("or until convergence") | ``epochs``; ``tol``, ``patience``     |
| line 4: ``for i ∈ [N]``, in dataset order           | a jitted ``lax.scan`` over samples    |
| line 6: ``w ← w − (η/N) ∂L/∂w(x_i)``                | :mod:`bpjax.algorithm1`               |
| ``η > 0``, the gradient step                        | ``learning_rate``                     |
| §1.3.1 note: "clamp" weights                        | ``frozen``, see :mod:`bpjax.clamping` |

``∂L/∂w(x_i)`` is sample ``i``'s term of the gradient without the ``1/N``,
computed by the hand-written backward pass of :mod:`bpjax.backward`, never by autodiff.

**One family of steps.** Write ``L = Σ_B L_B``, where ``L_B = 1/N Σ_{i∈B} ℓ_i`` holds the terms
of the loss of the samples in a batch ``B`` (for loss (1), ``ℓ_i = ½ ‖φ_θ(x_i) − y_i‖²``; any
loss of :mod:`bpjax.losses` with ``loss=``). Every step, whatever the batch
size, follows the gradient of its batch's share of the loss,

    G_B = ∂L_B/∂w = (1/N) Σ_{i∈B} ∂L/∂w(x_i),         w ← w − η G_B,

so that over one epoch the ``G_B`` add up to ``∂L/∂w``: one epoch moves the weights by about one
full-batch step of size ``η``, for every batch size.

* ``batch_size=1``: ``G_B = (1/N) ∂L/∂w(x_i)``, Algorithm 1 exactly.
* ``batch_size=B``: ``⌈N/B⌉`` steps per epoch; when ``B`` does not divide ``N`` the last batch
  holds the remaining ``N mod B`` samples (every sample is used exactly once per epoch).
* ``batch_size=None``: one step of exact gradient descent on ``L`` per epoch.

With per-sample weights (``weights=``, ``s_i``) the loss is ``Σ_i s_i ℓ_i / Σ_i s_i`` and
``1/N`` becomes ``s_i / Σ s`` everywhere: ``G_B = Σ_{i∈B} (s_i / Σ s) ∂L/∂w(x_i)``.

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

What optax gets, precisely: every ``GradientTransformation`` is called as
``optimizer.update(G_B, state, w)``. One whose update needs more (found by tracing it once) is
also given ``value=L_B(w)``, ``grad=G_B`` and, if it asks, ``value_fn=L_B`` — the batch's share
of the loss as a function of the weights, whose ``jax.grad`` runs the hand-written backward
pass (a ``jax.custom_vjp``, :func:`bpjax.backward.loss_by_hand`); clamped weights are held
fixed inside it. So ``optax.lbfgs()`` and other line searches (``value_fn``) run with
``batch_size=None`` — they need the whole loss — and ``optax.polyak_sgd``,
``optax.contrib.reduce_on_plateau`` (``value``) with any batch size. ``optax.MultiSteps`` is
accepted as it is. An update that needs any other keyword argument, or that cannot take
``params`` as bpjax keeps them (``optax.lookahead`` wants ``LookaheadParams``), is refused
with a ``TypeError`` before any work.

**Clamping.** ``frozen[l-1][j, k] == True`` keeps ``w^l_jk`` bit for bit: the mask is applied
to the final update, after the optimizer, so momentum and weight decay cannot move a clamped
weight. Structural zeros (``bias=False``, absent connections) never change either.

**Speed.** The per-sample step is one fused jitted body on vectors: forward pass, deltas
(equations (2)-(3) from :mod:`bpjax.backward`) and rank-1 updates, a layer's biases and
weights updated by one kernel. Each layer is kept and applied in the layout its shape makes cheapest
(:func:`bpjax.algorithm1.layer_plan`: transposed for a long update loop, products as
broadcast sums where the matrix-product call would dominate), and the next sample is fetched
one step ahead. A large layer (``≥ 32768`` weights, none of them clamped or structural zeros)
defers its rank-1 updates over blocks of 16 samples and folds them in at once; every sample
still sees the weights left by the one before (see :mod:`bpjax.algorithm1`), so this is
Algorithm 1 up to floating-point rounding, checked against plain loops to ``1e-10`` in
float64. On a CPU the per-sample loop is compiled to run on the calling thread (see
``bpjax.algorithm1.SEQUENTIAL_CPU``): its steps are too small and too sequential to share
between cores.
(Called inside your own ``jax.jit``, ``fit`` is compiled with that function's options.)

**Where the pieces are.** This module holds :func:`fit`; the rest is one module per idea:
:mod:`bpjax.algorithm1` (line 6, one sample at a time), :mod:`bpjax.minibatch` (one epoch of
the family of steps), :mod:`bpjax.loop` (line 3: the epochs and the stopping rules, shared by
every trainer) and :mod:`bpjax.arguments` (checking and preparing the arguments).

**Many devices.** With ``mesh=``, every batch is split over the devices of the mesh axis
``data_axis`` and the weights are replicated; ``jax.jit``'s SPMD partitioner adds the devices'
shares of ``G_B`` with one all-reduce per step (:mod:`bpjax.distributed`).

**Stopping.** Training runs ``epochs`` epochs unless it stops earlier, inside the jitted loop:

* ``tol``: once the training loss is ``≤ tol`` ("until convergence");
* ``patience``: once the monitored loss — the validation loss if ``validation`` is given,
  else the training loss — has not improved by more than ``min_delta`` for ``patience``
  epochs. With ``patience`` the returned weights are always the best ones seen (the initial
  ones included), together with the optimizer state they had;
* divergence: a non-finite training loss stops training at once. That epoch is not kept — not
  in the weights, nor in ``losses``/``val_losses``, nor in the epoch counts — so the result
  describes the weights before it (or the best ones with ``patience``); ``diverged_epoch``
  names it, and a :class:`bpjax.DivergenceWarning` says so, with what to try, unless
  ``on_divergence="ignore"``. See :class:`bpjax.FitResult` for the shape of the histories.

**Under** ``jax.jit`` traced values cannot be checked in Python: a traced ``learning_rate``
that is ``≤ 0`` or not finite runs no epoch (``epochs_run == 0``, every loss NaN, the weights
returned as given) instead of climbing the loss; other traced hyper-parameters pass as they
are, and no warning can be issued (read ``result.diverged``).
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from bpjax import minibatch
from bpjax.algorithm1 import sequential, sequential_jit
from bpjax.arguments import init_state, is_traced, prepare
from bpjax.compilation import batched_jit
from bpjax.distributed import data_parallel, on_mesh
from bpjax.loop import (
    CHUNK,
    FitResult,
    check_on_divergence,
    check_progress,
    drive,
    fresh_state,
    host_result,
    host_start,
    host_view,
    initial_state,
    pack,
    result,
    warn_divergence,
)
from bpjax.network import Network, check_network
from bpjax.params import Params

__all__ = ["FitResult", "fit"]

# The loop does not donate its state: the first call starts from the weights as given (a
# copy to donate would cost as much as the buffers donation saves), built without a device call.
_LOOP_STATIC = dict(static_argnames=("net", "optimizer", "config"))


def _start(net, optimizer, config, data, params, opt_state, epoch):
    """The loop's state before the first epoch, packed (no histories), with the optimizer's
    initial state if none is given and the initial weights' loss as the best one
    (``patience``): one compiled call."""
    if opt_state is None:
        opt_state = init_state(optimizer, params)
    return pack(initial_state(net, config, data, params, opt_state, epoch, 0))


_start_jit = batched_jit(_start, static_argnames=("net", "optimizer", "config"))
_loop_jit = batched_jit(minibatch.run, **_LOOP_STATIC)
_loop_sequential_jit = sequential_jit(minibatch.run, **_LOOP_STATIC)


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
    on_divergence: str = "warn",
    loss=None,
    weights=None,
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
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``); integer class labels ``(N,)`` when
        ``d > 1``, one-hot encoded (see :func:`bpjax.loss`).
      learning_rate: ``η > 0``; required with ``optimizer=None``. With an optimizer it scales
        the optimizer's updates and defaults to 1, so ``optimizer=optax.adam(1e-3)`` alone
        trains at Adam's rate 1e-3.
      epochs: the number of epochs ``T ≥ 0`` (passes over the data), at most.
      batch_size: ``1`` (Algorithm 1), ``B`` in ``1..N`` (minibatches; the last one holds
        ``N mod B`` samples when ``B`` does not divide ``N``), or ``None`` (full batch).
      optimizer: an optax ``GradientTransformation`` (or ``optax.MultiSteps``; L-BFGS and
        other line searches with ``batch_size=None``, see above), or ``None`` for the plain
        step of the paper. Either give it its own rate (``optax.adam(1e-3)``, no
        ``learning_rate``), or build it with rate 1 (``optax.adam(1.0)``) and pass
        ``learning_rate``, which can then change between calls without recompiling.
      frozen: optional boolean masks shaped like ``params``; ``True`` clamps ``w^l_jk`` (see
        :func:`bpjax.frozen_mask` and :func:`bpjax.clamp`).
      opt_state: the optimizer state to start from (default ``optimizer.init(params)``).
      shuffle: a ``jax.random.key``: reshuffle the samples every epoch (epoch ``t`` uses
        ``fold_in(key, t)``); ``None`` keeps the dataset order.
      validation: optional ``(X_val, Y_val)`` or ``(X_val, Y_val, weights_val)``; its loss (the
        same ``loss``, weighted by ``weights_val`` if given) is recorded after each epoch and
        is what ``patience`` monitors.
      tol: stop once the training loss is ``≤ tol``.
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
      on_divergence: ``"warn"`` (default): if the training loss becomes NaN or infinite, warn
        with a :class:`bpjax.DivergenceWarning` that names the epoch and what to try;
        ``"ignore"``: say nothing (``result.diverged`` tells either way). Under ``jax.jit``
        nothing can be printed: read ``result.diverged``.
      loss: the loss trained on, a name or a :class:`bpjax.Loss` (see :mod:`bpjax.losses`):
        ``"squared"`` (equation (1)), ``"binary_cross_entropy"``, ``"softmax_cross_entropy"``
        or a registered one. ``None`` (default): the loss a resumed :class:`bpjax.Checkpoint`
        was saved with, else ``"squared"``. Every step, ``losses`` and ``val_losses`` use it;
        the step stays ``w ← w − (η/N) ∂L/∂w(x_i)`` with ``∂L/∂w(x_i)`` sample ``i``'s term
        of this loss without the ``1/N``.
      weights: optional per-sample weights ``s`` ``(N,)``, finite, ``≥ 0``, not all 0: the
        loss becomes ``Σ_i s_i ℓ_i / Σ_i s_i`` (as in :func:`bpjax.loss`), and every step
        follows its gradient: Algorithm 1 steps ``w ← w − η (s_i / Σ s) ∂ℓ_i/∂w`` (``η/N``
        when all ``s_i`` are equal), a batch ``B`` along ``Σ_{i∈B} (s_i / Σ s) ∂ℓ_i/∂w``.

    Returns:
      A :class:`FitResult`; with a mesh, ``params`` and ``opt_state`` are replicated on it.

    Raises:
      TypeError, ValueError: a bad input, before any work: an unknown loss or one the network
        cannot serve, targets the loss cannot take, ``learning_rate ≤ 0`` or not finite,
        ``epochs < 0``, ``batch_size`` outside ``1..N``, NaN or Inf in the data or weights,
        ``frozen`` not shaped like ``params``, ``X`` and ``Y`` of different lengths, an
        ``opt_state`` that does not fit the optimizer; with a mesh, no axis ``data_axis`` or
        a batch size that does not split evenly over it.
    """
    check_network(net, "fit")
    check_on_divergence(on_divergence)
    check_progress(progress)
    prep, epochs = prepare(
        net, params, X, Y, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, frozen=frozen, opt_state=opt_state, shuffle=shuffle,
        validation=validation, tol=tol, patience=patience, min_delta=min_delta, loss=loss,
        weights=weights, defer_init=True)
    if mesh is not None:  # every batch split over the mesh: see bpjax.distributed
        prep = data_parallel(prep, mesh, data_axis)
    config, data, hyper, optimizer = prep.config, prep.data, prep.hyper, prep.optimizer

    if is_traced(prep.params, data, hyper, prep.opt_state):
        # Under jax.jit / jax.vmap: one traced loop over all the epochs, NaN-padded histories.
        opt_state = init_state(optimizer, prep.params) if prep.opt_state is None else \
            prep.opt_state
        loop = initial_state(net, config, data, prep.params, opt_state, prep.epoch,
                             chunk=epochs)
        loop = minibatch.run(net, optimizer, config, loop, data, hyper, epochs)
        return result(config, loop, loop.losses, loop.val_losses)

    loop_jit = _loop_sequential_jit if sequential(config, data) else _loop_jit

    def run(state, n):  # state: the loop's state as the host holds it (a LoopState)
        out = loop_jit(net, optimizer, config, host_start(state, CHUNK), data, hyper,
                       np.int32(n))
        return host_view(out)

    # The optimizer's initial state, the best weights' first loss and the mesh's placement are
    # computed by one compiled start; without them the start is built on the host
    if prep.opt_state is None or config.restore_best or mesh is not None:
        state = host_view(_start_jit(net, optimizer, config, data, prep.params,
                                     prep.opt_state, prep.epoch))
    else:
        state = fresh_state(np, prep.params[0].dtype, prep.epoch, 0)._replace(
            params=prep.params, opt_state=prep.opt_state)
    loop, losses, val_losses = drive(run, state, epochs, progress, "fit")
    r = host_result(config, loop, losses, val_losses, prep.params[0].dtype)
    if mesh is not None:
        r = r._replace(params=on_mesh(r.params, mesh), opt_state=on_mesh(r.opt_state, mesh))
    warn_divergence(r, on_divergence, learning_rate, "fit")
    return r
