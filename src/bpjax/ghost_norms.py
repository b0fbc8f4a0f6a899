"""Per-sample gradient norms without per-sample gradients ("ghost norms"), and DP-SGD's clipped sum.

Sample ``i``'s gradient of layer ``l`` (its term of ``∂L/∂w`` without the ``1/N``, as in
:func:`bpjax.per_example_backprop`) is an outer product: the last row of the table of
:mod:`bpjax.backward`, ``∂L/∂w^l(x_i) = φ̃^{l-1}_i ⊗ δ^l_i``, with ``φ̃^{l-1}_i = [1 | φ_in(x_i)]``
the homogenised inputs (``ã_i``) and ``δ^l_i`` sample ``i``'s backpropagated error. Its squared
norm never needs the ``(1 + fan_in) × N_l`` matrix:

| quantity                                     | code                                         |
| -------------------------------------------- | -------------------------------------------- |
| ``g^l_i = φ̃^{l-1}_i ⊗ δ^l_i`` (masked by M)  | never formed                                 |
| dense layer: ``‖g^l_i‖² = ‖φ̃_i‖² ‖δ_i‖²``   | ``(x * x).sum(-1) * (d * d).sum(-1)``        |
| structure mask ``M``: ``(φ̃_i²)ᵀ M (δ_i²)``  | ``((x * x) @ M * (d * d)).sum(-1)``          |
| ``‖g_i‖² = Σ_l ‖g^l_i‖²``                    | ``GhostNorms.total``                         |
| ``Σ_i min(1, C/‖g_i‖) g_i`` (DP-SGD)          | ``weight_gradients(tr, c_i δ_i)``            |

A layer without bias has ``φ̃_0 = 0`` (:func:`bpjax.forward.homogenised`), so its row 0 drops out
of the dense formula by itself; the mask is needed for absent connections only.

The clipped sum reweights the samples: ``Σ_i c_i g^l_i = Σ_i φ̃_i ⊗ (c_i δ_i)``, one product per
layer with the errors scaled by ``c_i = min(1, C/‖g_i‖)``. As ``δ^l_i`` is linear in sample
``i``'s output error, ``c_i δ^l_i`` is what a backward pass from the reweighted errors
``c_i ∂ℓ_i/∂φ^L`` (``c_i (φ_θ(x_i) − y_i)`` for loss (1)) gives, so the deltas of the one
backward pass are reused as they are.

Cost: one forward and one backward pass, and ``O(N Σ_l (fan_in + N_l))`` for the norms (with a
mask, ``O(N Σ_l fan_in N_l)``), against ``O(N × number of weights)`` memory for the per-sample
gradients themselves (``jax.vmap(jax.grad)``, :func:`bpjax.per_example_backprop`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.arguments import number
from bpjax.backward import loss_deltas, weight_gradients
from bpjax.forward import Trace, homogenised, layer_inputs, propagate
from bpjax.loss import prepare_supervised, resolve_loss
from bpjax.losses import SQUARED, Loss
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["ClippedGradSum", "GhostNorms", "clipped_grad_sum", "ghost_norms"]


class GhostNorms(NamedTuple):
    """Each sample's squared gradient norm, per layer and in total.

    Attributes:
      layers: ``(N, L)``: ``layers[i, l-1] = ‖∂L/∂w^l(x_i)‖²``.
      total: ``(N,)``: ``‖∂L/∂θ(x_i)‖² = Σ_l layers[i, l-1]``.
    """

    layers: jax.Array
    total: jax.Array


class ClippedGradSum(NamedTuple):
    """DP-SGD's clipped per-sample gradient sum, and what it was clipped by.

    Attributes:
      grads: ``Σ_i min(1, C/‖g_i‖) g_i``, shaped like ``params``.
      norms: the :class:`GhostNorms` of the unclipped ``g_i``.
      scale: ``(N,)``: each sample's factor ``min(1, C/‖g_i‖)`` (1 where ``g_i = 0``).
    """

    grads: Params
    norms: GhostNorms
    scale: jax.Array


def _backward(net: Network, params: Params, X, Y, loss: Loss) -> tuple[Trace, tuple]:
    """The trace and the per-sample deltas ``δ^l_i`` (from ``∂ℓ_i/∂φ^L``, no ``1/N``)."""
    tr = propagate(net, params, X)
    return tr, loss_deltas(net, params, tr, Y, loss)


def _norms(net: Network, tr: Trace, delta: tuple) -> GhostNorms:
    cols = []
    for l, layer in enumerate(net.layers, start=1):
        x = homogenised(layer_inputs(net, tr.phi, l), layer.bias)
        x2, d2 = x * x, delta[l] * delta[l]
        if layer.adjacency is None:  # ‖φ̃_i‖² ‖δ_i‖²
            cols.append(x2.sum(-1) * d2.sum(-1))
        else:  # (φ̃_i²)ᵀ M (δ_i²)
            M = jnp.asarray(np.asarray(net.structure(l), dtype=np.dtype(x.dtype)))
            cols.append(((x2 @ M) * d2).sum(-1))
    layers = jnp.stack(cols, axis=-1)
    return GhostNorms(layers, layers.sum(-1))


def ghost_norms_of(net: Network, params: Params, X, Y, loss: Loss = SQUARED) -> GhostNorms:
    """:func:`ghost_norms` for prepared ``X (N, D)``, ``Y (N, d)``; pure, jittable."""
    params = structural(net, params)
    return _norms(net, *_backward(net, params, X, Y, loss))


def clipped_grad_sum_of(net: Network, params: Params, X, Y, clip,
                        loss: Loss = SQUARED) -> ClippedGradSum:
    """:func:`clipped_grad_sum` for prepared ``X (N, D)``, ``Y (N, d)``; pure, jittable."""
    params = structural(net, params)
    tr, delta = _backward(net, params, X, Y, loss)
    norms = _norms(net, tr, delta)
    norm = jnp.sqrt(norms.total)
    scale = jnp.where(norm > clip, clip / jnp.where(norm > clip, norm, 1), 1).astype(norm.dtype)
    scaled = tuple(None if d is None else d * scale[:, None] for d in delta)
    return ClippedGradSum(weight_gradients(net, tr, scaled), norms, scale)


_ghost_norms_jit = jax.jit(ghost_norms_of, static_argnums=(0, 4))
_clipped_jit = jax.jit(clipped_grad_sum_of, static_argnums=(0, 5))


def ghost_norms(net: Network, params: Params, X, Y, *, loss="squared") -> GhostNorms:
    """Each sample's squared gradient norm, per layer and in total, from one backward pass.

    The gradients are sample ``i``'s terms ``∂L/∂w(x_i)`` of the loss without the ``1/N``
    (those of :func:`bpjax.per_example_backprop`), whose norms are computed from the
    homogenised inputs and the deltas alone (see the module docstring).

    Args:
      net: the network (any DAG, masks included).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``); integer class labels ``(N,)`` when
        ``d > 1``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``).

    Returns:
      :class:`GhostNorms`: ``layers (N, L)`` and ``total (N,)``, squared norms.
    """
    check_network(net, "ghost_norms")
    loss = resolve_loss(net, loss)
    params, X2, Y2, _ = prepare_supervised(net, params, X, Y, None, loss)
    return _ghost_norms_jit(net, params, X2, Y2, loss)


def clipped_grad_sum(net: Network, params: Params, X, Y, *, clip,
                     loss="squared") -> ClippedGradSum:
    """DP-SGD's step direction ``Σ_i min(1, C/‖g_i‖) g_i``, without forming any ``g_i``.

    ``g_i = ∂L/∂θ(x_i)`` is sample ``i``'s gradient (no ``1/N``), clipped to norm ``C`` over
    all layers together. One forward and one backward pass: the norms come from
    :func:`ghost_norms`, and the sum from the same deltas reweighted by the clip factors.
    Add the noise and divide by the batch size yourself (DP-SGD's remaining steps).

    Args:
      net: the network (any DAG, masks included).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``); integer class labels ``(N,)`` when
        ``d > 1``.
      clip: the clipping norm ``C > 0``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``).

    Returns:
      :class:`ClippedGradSum` ``(grads, norms, scale)``.
    """
    check_network(net, "clipped_grad_sum")
    number(clip, "clip", minimum=0, strict=True)
    loss = resolve_loss(net, loss)
    params, X2, Y2, _ = prepare_supervised(net, params, X, Y, None, loss)
    return _clipped_jit(net, params, X2, Y2, jnp.asarray(clip, X2.dtype), loss)
