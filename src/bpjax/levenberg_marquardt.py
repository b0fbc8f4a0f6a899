"""Levenberg–Marquardt training for the squared loss (1), as MATLAB's ``trainlm`` does it.

Loss (1) is a sum of squares, ``L = ‖e‖² / (2N)``, of the ``N·d`` residuals
``e_(i,k) = φ_θ(x_i)_k − y_ik``. Levenberg–Marquardt linearises the residuals with the
per-sample Jacobian ``J = ∂e/∂w = ∂φ_θ/∂w`` (:func:`bpjax.jacobian`, by hand) and steps to the
minimum of the linearised loss, damped by ``μ``:

| trainlm                                              | code                                  |
| ---------------------------------------------------- | ------------------------------------- |
| ``e``, ``J = ∂e/∂w`` (free weights only)             | ``e = r.ravel()``, ``J = flat[:, free]`` |
| ``Δ = −(JᵀJ + μI)⁻¹ Jᵀe`` (dense Cholesky)           | ``cho_solve(cho_factor(H + μI), −g)`` |
| ``L(w + Δ) < L(w)``: accept, ``μ ← max(μ·μ_dec, 1e-20)`` | ``accept``                          |
| else ``μ ← μ·μ_inc`` and solve again                 | the inner ``lax.while_loop``          |
| stop once ``μ > μ_max``, or ``‖Jᵀe‖ ≤ min_grad``     | ``LMState.found`` is False            |
| ``μ`` carries over from one iteration to the next    | ``LMState.mu``                        |

One iteration is one accepted step; it is one "epoch" of the loop that every trainer shares
(:func:`bpjax.loop.run_epochs`), so ``tol``, ``validation`` and ``patience`` work as in
:func:`bpjax.fit` and the result is a :class:`bpjax.FitResult` whose ``losses[t]`` is loss (1)
after the ``t + 1``-th accepted step. A search that finds no step (``μ`` passed ``mu_max``) or
a gradient ``‖Jᵀe‖ ≤ min_grad`` ends training; that last search is not an iteration. (trainlm
records it as an epoch that left the weights unchanged.)

The search runs one iteration ahead: the state carried from iteration ``t`` to ``t + 1`` holds
the accepted step from the current weights already (:class:`LMState`), so the loop can stop
*before* an iteration that has no step to take. The price is one search beyond the last
iteration.

**Unknowns.** Clamped weights (``frozen``) and structural zeros (``bias=False``, absent
connections) are not unknowns: ``J`` keeps only the columns of the free weights, and the
others stay bit for bit. ``JᵀJ`` is a dense ``n × n`` matrix for ``n`` free weights, solved by
Cholesky: ``n`` is limited to :data:`MAX_FREE_WEIGHTS` (``JᵀJ`` of 128 MiB in float64, a
factorisation of ``n³/3`` multiply-adds per trial of ``μ``); beyond it use :func:`bpjax.fit`.
``J`` itself takes ``N·d·n`` numbers. A factorisation that fails (``JᵀJ + μI`` not positive
definite in floating point, as with a tiny ``μ``) gives NaN, whose loss is not below ``L(w)``:
the step is rejected and ``μ`` grows, as trainlm does on a singular matrix.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.arguments import is_traced, number, prepare
from bpjax.checkpoint import Checkpoint
from bpjax.clamping import apply_update
from bpjax.forward import propagate
from bpjax.jacobian import MODES, jacobian_of_params, resolve_mode
from bpjax.loop import (
    CHUNK,
    FitResult,
    check_progress,
    drive,
    host_result,
    initial_state,
    result,
    run_epochs,
)
from bpjax.loss import loss_of_params
from bpjax.losses import SQUARED, get_loss, weighted_mean
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["MAX_FREE_WEIGHTS", "LMState", "levenberg_marquardt"]

MAX_FREE_WEIGHTS = 4096  # free weights n of the dense solve: JᵀJ is n × n
MU_MIN = 1e-20  # trainlm's floor for μ after an accepted step


class LMState(NamedTuple):
    """What Levenberg–Marquardt carries between iterations (``FitResult.opt_state``).

    Attributes:
      mu: ``μ`` after the last search: the damping the next search starts from.
      step: the weights ``w + Δ`` of the accepted step from the current weights (the current
        weights themselves when no step was found).
      found: whether the last search found a step. False once ``μ`` passed ``mu_max`` or the
        gradient fell to ``min_grad``: training stopped there.
      grad_norm: ``‖Jᵀe‖`` at the current weights (free weights only).
      solves: the number of Cholesky solves so far (accepted and rejected trials of ``μ``).
    """

    mu: jax.Array
    step: Params
    found: jax.Array
    grad_norm: jax.Array
    solves: jax.Array


class LMHyper(NamedTuple):
    """The traced constants of the search (changing them never recompiles)."""

    mu_dec: jax.Array
    mu_inc: jax.Array
    mu_max: jax.Array
    min_grad: jax.Array


def residual_jacobian(net: Network, mode: str, params: Params, X, free) -> jax.Array:
    """``J = ∂e/∂w`` ``(N·d, n)``: the columns of the free weights, flattened layer by layer."""
    J = jacobian_of_params(net, params, X, mode)
    N, d = J[0].shape[:2]
    return jnp.concatenate([j.reshape(N * d, -1) for j in J], axis=1)[:, free]


def _unflatten(net: Network, free, delta, dtype) -> Params:
    """The free weights' ``Δ`` ``(n,)`` as per-layer steps shaped like ``params`` (0 elsewhere)."""
    flat = jnp.zeros(sum(r * c for r, c in net.shapes), dtype).at[free].set(delta)
    out, start = [], 0
    for r, c in net.shapes:
        out.append(flat[start:start + r * c].reshape(r, c))
        start += r * c
    return tuple(out)


def search(net, mode, data, free, lm, params, mu, solves):
    """From weights ``w``: ``Δ = −(JᵀJ + μI)⁻¹ Jᵀe``, ``μ`` growing until ``L(w + Δ) < L(w)``.

    Returns the :class:`LMState` for the weights ``params``.
    """
    X, Y = data.X, data.Y
    phi_L = propagate(net, structural(net, params), X).phi[-1]
    e = (phi_L - Y).reshape(-1)
    L0 = weighted_mean(SQUARED.ell(phi_L, Y))
    J = residual_jacobian(net, mode, params, X, free)
    g = J.T @ e  # Jᵀe, N × the gradient of loss (1)
    H = J.T @ J
    grad_norm = jnp.sqrt(g @ g)
    eye = jnp.eye(H.shape[0], dtype=H.dtype)
    masks = data.trainable if data.trainable is not None else (None,) * net.depth

    def trial(c):
        mu, _, k, _ = c
        delta = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(H + mu * eye), -g)
        steps = _unflatten(net, free, delta, params[0].dtype)
        w = tuple(apply_update(p, s, m) for p, s, m in zip(params, steps, masks))
        accept = loss_of_params(net, w, X, Y) < L0  # NaN (a failed factorisation) rejects
        mu = jnp.where(accept, jnp.maximum(mu * lm.mu_dec, MU_MIN), mu * lm.mu_inc)
        return mu, accept, k + 1, w

    def more(c):
        mu, found, _, _ = c
        return ~found & (mu <= lm.mu_max) & (grad_norm > lm.min_grad)

    mu, found, solves, step = jax.lax.while_loop(
        more, trial, (mu, jnp.asarray(False), solves, params))
    return LMState(mu=mu, step=step, found=found, grad_norm=grad_norm, solves=solves)


def one_iteration(net, mode, data, free, lm, params, state, t):
    """One iteration: take the step found from the current weights, then search the next."""
    del t
    return state.step, search(net, mode, data, free, lm, state.step, state.mu, state.solves)


def _start(net, mode, config, data, free, lm, params, mu, epoch, chunk):
    state = search(net, mode, data, free, lm, params, mu, jnp.asarray(0, jnp.int32))
    return initial_state(net, config, data, params, state, epoch, chunk)


def _run(net, mode, config, loop, data, free, lm, hyper, n):
    one = partial(one_iteration, net, mode, data, free, lm)
    return run_epochs(net, one, config, loop, data, hyper, n, stop=lambda s: ~s.found)


_start_jit = jax.jit(_start, static_argnames=("net", "mode", "config", "chunk"))
_run_jit = jax.jit(_run, static_argnames=("net", "mode", "config"), donate_argnames=("loop",))


def _check_arguments(iterations, mu, mu_dec, mu_inc, mu_max, min_grad, loss, mode):
    """Every hyper-parameter of :func:`levenberg_marquardt`, before any work."""
    if isinstance(iterations, jax.core.Tracer):
        raise TypeError("iterations must be a Python int (it sets the length of the losses)")
    number(iterations, "iterations", integer=True, minimum=1)
    number(mu, "mu", minimum=0, strict=True)
    number(mu_dec, "mu_dec", minimum=0, strict=True)
    if not isinstance(mu_dec, jax.core.Tracer) and not float(mu_dec) < 1:
        raise ValueError(f"mu_dec must be in (0, 1) (μ ← μ·mu_dec after a step), got {mu_dec!r}")
    number(mu_inc, "mu_inc", minimum=1, strict=True)
    number(mu_max, "mu_max", minimum=0, strict=True)
    if not any(isinstance(v, jax.core.Tracer) for v in (mu, mu_max)) and mu > mu_max:
        raise ValueError(f"mu must be <= mu_max, got mu = {mu!r} > mu_max = {mu_max!r}")
    number(min_grad, "min_grad", minimum=0)
    # The squared loss is the only one whose Hessian JᵀJ approximates: any other loss of the
    # registry (bpjax.losses), or "squared" re-registered as another function, is refused.
    if get_loss(loss) is not SQUARED:
        raise ValueError(
            f"levenberg_marquardt supports only the squared loss (1), loss='squared' (its "
            f"Gauss–Newton matrix JᵀJ needs residuals), got loss={loss!r}; train other losses "
            f"with bp.fit")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"jacobian_mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")


def free_weights(net: Network, frozen) -> np.ndarray:
    """The flat indices of the free weights (``structure & ~frozen``), layer by layer."""
    frozen = (None,) * net.depth if frozen is None else frozen
    return np.flatnonzero(np.concatenate([
        (net.structure(l) if f is None else net.structure(l) & ~np.asarray(f, bool)).ravel()
        for l, f in enumerate(frozen, start=1)]))


def levenberg_marquardt(
    net: Network,
    params: Params | FitResult,
    X,
    Y,
    *,
    iterations: int,
    mu: float = 1e-3,
    mu_dec: float = 0.1,
    mu_inc: float = 10.0,
    mu_max: float = 1e10,
    tol: float | None = None,
    min_grad: float = 1e-7,
    frozen: Params | None = None,
    validation: tuple | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    loss: str = "squared",
    jacobian_mode: str = "auto",
    progress: bool | dict = False,
) -> FitResult:
    """Trains ``net`` on loss (1) by Levenberg–Marquardt, following MATLAB's ``trainlm``.

    Each iteration solves ``(JᵀJ + μI) Δ = −Jᵀe`` for the free weights, with the residuals
    ``e = φ_θ(X) − Y`` and ``J = ∂e/∂w`` from :func:`bpjax.jacobian`, and accepts ``w + Δ`` once
    its loss is below the current one; see the module docstring for the rules. The defaults
    are trainlm's.

    Args:
      net: the network.
      params: the initial weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``; or a
        previous :class:`FitResult` (or :class:`bpjax.Checkpoint`) to continue from its
        weights and epoch count (``μ`` restarts at ``mu``, as each call of trainlm does).
      X: inputs ``(N, D)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``).
      iterations: the number of iterations (accepted steps) ``≥ 1``, at most.
      mu: the initial damping ``μ > 0``.
      mu_dec: ``μ ← μ·mu_dec`` after an accepted step, in ``(0, 1)``.
      mu_inc: ``μ ← μ·mu_inc`` after a rejected one, ``> 1``.
      mu_max: training stops once ``μ > mu_max``.
      tol: stop once the training loss (1) is ``≤ tol`` (trainlm's ``goal``).
      min_grad: stop once ``‖Jᵀe‖ ≤ min_grad`` (over the free weights; ``Jᵀe`` is ``N`` times
        the gradient of loss (1)).
      frozen: optional boolean masks shaped like ``params``; ``True`` clamps ``w^l_jk``: it is
        not an unknown and keeps its value bit for bit.
      validation: optional ``(X_val, Y_val)``; its loss (1) is recorded after each iteration
        and is what ``patience`` monitors (trainlm's ``max_fail``).
      patience: stop once the monitored loss has not improved by more than ``min_delta`` for
        this many iterations, and return the best weights.
      min_delta: the improvement ``patience`` asks for, ``≥ 0``.
      loss: ``"squared"``, the only loss Levenberg–Marquardt applies to.
      jacobian_mode: the mode of :func:`bpjax.jacobian`, ``"auto"`` by default.
      progress: show a tqdm progress bar, as in :func:`bpjax.fit`.

    Returns:
      A :class:`FitResult`: ``losses[t]`` is loss (1) after the ``t + 1``-th accepted step;
      ``opt_state`` is the :class:`LMState` (``μ``, ``‖Jᵀe‖``, solves so far), whose
      ``found`` is False when ``μ`` passed ``mu_max`` or ``‖Jᵀe‖`` reached ``min_grad``. With
      ``patience`` both are the best iteration's, as in :func:`bpjax.fit`.

    Raises:
      TypeError, ValueError: a bad input, before any work: ``iterations < 1``, ``mu ≤ 0``,
        ``mu_dec`` outside ``(0, 1)``, ``mu_inc ≤ 1``, ``mu > mu_max``, ``min_grad < 0``, a
        loss other than the squared one, more than :data:`MAX_FREE_WEIGHTS` free weights or
        none, a traced ``frozen``, and what :func:`bpjax.fit` refuses (shapes, NaN, ...).

    Example:
      >>> import jax, jax.numpy as jnp, bpjax as bp
      >>> net = bp.Network(1, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
      >>> X = jnp.linspace(-2, 2, 40)[:, None]
      >>> r = bp.levenberg_marquardt(net, bp.init(net, jax.random.key(0)), X, jnp.sin(X),
      ...                            iterations=50)
      >>> bool(r.losses[-1] < 1e-4 * r.losses[0])
      True
    """
    check_network(net, "levenberg_marquardt")
    check_progress(progress)
    _check_arguments(iterations, mu, mu_dec, mu_inc, mu_max, min_grad, loss, jacobian_mode)
    epoch = 0
    if isinstance(params, (FitResult, Checkpoint)):
        params, epoch = params.params, params.epoch
    if frozen is not None and is_traced(frozen):
        raise TypeError("frozen must be concrete, not traced: it decides which weights are the "
                        "unknowns of the solve")
    prep, iterations = prepare(
        net, params, X, Y, learning_rate=1.0, epochs=iterations, batch_size=None,
        optimizer=None, frozen=frozen, opt_state=None, shuffle=None, validation=validation,
        tol=tol, patience=patience, min_delta=min_delta, loss=SQUARED,
        who="levenberg_marquardt")
    config, data, hyper = prep.config, prep.data, prep.hyper
    free = free_weights(net, frozen)
    if free.size == 0:
        raise ValueError("levenberg_marquardt has no free weights: every weight is clamped "
                         "(frozen) or a structural zero")
    if free.size > MAX_FREE_WEIGHTS:
        raise ValueError(
            f"levenberg_marquardt solves a dense system in the free weights, at most "
            f"MAX_FREE_WEIGHTS = {MAX_FREE_WEIGHTS}; this network has {free.size} free weights "
            f"(JᵀJ would be {free.size}×{free.size}): clamp some, or use bp.fit")
    dtype = prep.params[0].dtype
    mode = resolve_mode(net, jacobian_mode)
    lm = LMHyper(*(jnp.asarray(v, dtype) for v in (mu_dec, mu_inc, mu_max, min_grad)))
    free = jnp.asarray(free, jnp.int32)
    mu0 = jnp.asarray(mu, dtype)

    if is_traced(prep.params, data, hyper, lm, mu0):
        # Under jax.jit / jax.vmap: one traced loop over all the iterations, NaN-padded.
        loop = _start(net, mode, config, data, free, lm, prep.params, mu0, epoch,
                      chunk=iterations)
        loop = _run(net, mode, config, loop, data, free, lm, hyper, iterations)
        return result(config, loop, loop.losses, loop.val_losses)

    def run(loop, n):
        return _run_jit(net, mode, config, loop, data, free, lm, hyper, np.int32(n))

    loop = _start_jit(net, mode, config, data, free, lm, prep.params, mu0, epoch, chunk=CHUNK)
    loop, losses, val_losses = drive(run, loop, iterations, progress, "levenberg_marquardt")
    return host_result(config, loop, losses, val_losses, dtype)
