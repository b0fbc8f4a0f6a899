"""The squared loss, equation (1), and its derivative with respect to the output φ^L.

    L(X × Y; θ) = 1/(2N) Σ_i Σ_k (φ_θ(x_i)_k − y_{i,k})²                         (1)

    ∂L/∂φ^L_k(x_i) = (1/N) (φ^L_k(x_i) − y_{i,k})

The second line is where backpropagation starts: the paper's
``∂L/∂w = 1/N Σ_i Σ_k ∂φ_θ[k]/∂w (x_i) (φ_θ(x_i)_k − y_{i,k})``.

With per-sample weights ``s_i ≥ 0`` the mean becomes a weighted mean: ``1/N`` is replaced
by ``s_i / Σ_i s_i``; all-ones weights give (1) exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bpjax.compilation import batched_jit
from bpjax.data import as_dtype, as_targets, as_weights, eager
from bpjax.forward import prepare, propagate
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["loss"]


def _sample_scale(r: jax.Array, s) -> jax.Array:
    """``1/N`` for every sample, or ``s_i / Σ s``; shape ``(N, 1)``, dtype of ``r``."""
    N = r.shape[0]
    if s is None:
        return jnp.full((N, 1), 1 / N, r.dtype)
    s = jnp.asarray(s, r.dtype)
    return (s / s.sum())[:, None]


def squared_loss(phi_L: jax.Array, Y: jax.Array, s=None) -> jax.Array:
    """Equation (1) from outputs ``phi_L`` and targets ``Y``, both ``(N, d)``; a scalar."""
    r = phi_L - Y
    return 0.5 * jnp.sum(_sample_scale(r, s) * r * r)


def dloss_dphi(phi_L: jax.Array, Y: jax.Array, s=None) -> jax.Array:
    """``∂L/∂φ^L``: ``(φ^L − Y) / N`` (weighted: ``s_i (φ^L − Y) / Σ s``); shape ``(N, d)``."""
    r = phi_L - Y
    return _sample_scale(r, s) * r


def loss_of_params(net: Network, params: Params, X, Y, s=None) -> jax.Array:
    """Equation (1) as a pure function of ``params`` for prepared ``X (N, D)``, ``Y (N, d)``."""
    return squared_loss(propagate(net, structural(net, params), X).phi[-1], Y, s)


def prepare_supervised(net: Network, params, X, Y, weights=None):
    """Checks and promotes ``(params, X, Y, weights)``, with ``X (N, D)`` and ``Y (N, d)``."""
    params, X2, single = prepare(net, params, X)
    Y2 = as_targets(net, Y, X2.shape[0], single)
    s = as_weights(weights, X2.shape[0])
    return params, X2, as_dtype(Y2, X2.dtype), s


def supervised(fn):
    """``fn(net, params, X (N, D), Y (N, d), s)`` as the jitted core of an eager function:
    ``core(net, params, X, Y, weights)`` takes the arguments as given and checks and promotes
    them with :func:`prepare_supervised` when traced (``net`` static). Call it with
    :func:`call_supervised`."""
    def core(net, params, X, Y, weights):
        return fn(net, *prepare_supervised(net, params, X, Y, weights))

    return batched_jit(core, static_argnums=0)


def call_supervised(core, net: Network, params, X, Y, weights=None):
    """``core(net, params, X, Y, weights)`` (a :func:`supervised` core), checked as in
    :func:`bpjax.data.eager`. Per-sample weights are checked first, and eagerly: their values
    must be finite, ``≥ 0`` and not all 0, which needs them on the host."""
    if weights is not None:
        prepare_supervised(net, params, X, Y, weights)
    return eager(core, prepare_supervised, net, params, X, Y, weights)


_loss_core = supervised(loss_of_params)


def loss(net: Network, params: Params, X, Y, weights=None) -> jax.Array:
    """The squared loss, equation (1).

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``.
      weights: optional per-sample weights ``s`` of shape ``(N,)``; the loss becomes
        ``1/(2 Σ s) Σ_i s_i ‖φ_θ(x_i) − y_i‖²``.

    Returns:
      ``L(X × Y; θ)``, a scalar.

    Values are not checked (no host sync): NaN or Inf in the inputs gives NaN or Inf; see
    :mod:`bpjax.data` for how to check them.
    """
    check_network(net, "loss")
    return call_supervised(_loss_core, net, params, X, Y, weights)
