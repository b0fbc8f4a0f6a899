"""The backward pass, written by hand: equations (2)-(4) of the paper, backpropagated.

Let ``δ^l_k = ∂L/∂a^l_k`` (summed over the samples, each weighted by ``1/N``). The paper's
recursion on ``∂φ^l_k/∂w^m_pr`` becomes, once multiplied by ``∂L/∂φ^L`` and summed over the
outputs, one backward sweep over the layers:

| paper                                                 | code                                    |
| ----------------------------------------------------- | --------------------------------------- |
| loss (1): ``∂L/∂φ^L_k = (1/N)(φ^L_k − y_k)``          | ``scale * e``, ``e = φ^L − y``          |
| any loss: ``∂L/∂φ^L = s_i/Σs · ∂ℓ_i/∂φ^L``            | ``e = losses.output_error(...)``        |
| or, fused (:mod:`bpjax.losses`), ``δ^L = ∂L/∂a^L``    | ``delta[L] = scale * e``                |
| (2) ``∂φ^l_k/∂w = ∂φ^l_k/∂a^l_k · ∂a^l_k/∂w``         | ``delta[l] = dL_dphi[l] * dphi(a[l])``  |
| (3) ``∂a^l_k/∂w = Σ_j w^l_jk ∂φ^{l-1}_j/∂w``          | ``dL_dphi[s] += (delta[l] @ w.T)[rows]`` |
| ``∂a^m_r/∂w^m_pr = φ^{m-1}_p``, ``= 1`` for ``p = 0``  | ``grad[m] = [1 | φ_in]ᵀ δ^m``           |
| (4) ``∂a^l_k/∂w^m_pr = 0`` if ``k ≠ r`` or ``l < m``   | nothing: only ``δ^m`` reaches ``w^m``   |
| one sample's ``∂L/∂w(x_i)`` (Algorithm 1)             | ``φ_in ⊗ δ^m``                          |

The first three rows are :func:`loss_deltas` (``scale``: ``1/N``, ``s_i/Σs``, or 1 for
Algorithm 1's step); (2) and (3) are :func:`delta_rule`; the last three rows are
:func:`weight_gradients` (a batch) and :func:`sample_weight_gradients` (one sample).

In a DAG a layer may feed several later layers; ``dL_dphi[s]`` then sums the contribution of
every consumer — the sum over paths of the chain rule. Layers are visited from ``L`` down to
``1``, so a layer's ``dL_dphi`` is complete when its turn comes. Structural zeros (no bias,
absent connections) get a gradient of exactly 0.

No automatic differentiation is used here: JAX's autodiff only checks this module, in the
tests and in :mod:`bpjax.gradcheck`. The one ``jax.custom_vjp`` (:func:`loss_by_hand`) does
not differentiate anything: it registers this module's gradient, equations (2)-(4), as the
derivative JAX returns when an optax optimizer differentiates the loss itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from bpjax import activations
from bpjax.forward import Trace, homogeneous, homogenised, layer_inputs, propagate
from bpjax.loss import call_supervised, resolve_loss, supervised
from bpjax.losses import SQUARED, Loss, output_error, sample_loss, sample_scale, weighted_mean
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["backprop", "deltas", "per_example_backprop", "value_and_backprop"]


def delta_rule(net: Network, W: Sequence, tr: Trace, g: jax.Array, *,
               bias_row: bool = False, inputs: bool = False,
               output_delta: bool = False) -> tuple:
    """``delta[l] = ∂L/∂a^l`` for ``l = 1..L`` (``delta[0]`` is None), from ``g = ∂L/∂φ^L``.

    With ``output_delta``, ``g`` is ``δ^L = ∂L/∂a^L`` itself (a loss's fused form, see
    :func:`bpjax.losses.output_error`): equation (2) is skipped for the output layer.

    ``W[l-1]`` is ``w^l`` without its bias row (``params[l-1][1:]``, see
    :func:`bpjax.forward.split`), or with it (``params[l-1]``) when ``bias_row``: the bias
    never carries an error backwards. Works on a batch (``g`` of shape ``(N, d)``) and on one
    sample (``g`` of shape ``(d,)``) alike.

    With ``inputs``, ``delta[0] = ∂L/∂x``, shaped like ``x``: the delta carried one step
    further, to the input layer read as identity neurons (``φ^0 = a^0 = x``), by (3) summed
    over every layer that reads ``x``, as for any other layer (``δ^1 w^{1ᵀ}`` without the bias
    row, for a feedforward network). Without it no work goes into ``x``, which has no θ in it.
    """
    L = net.depth
    N = g.size // g.shape[-1]
    dL_dphi: list = [None] * (L + 1)
    dL_dphi[L] = g
    delta: list = [None] * (L + 1)
    for l in range(L, 0, -1):
        layer, w = net.layer(l), W[l - 1]
        if dL_dphi[l] is None:  # no path from layer l to the output: every ∂φ^L/∂w^l is 0
            delta[l] = jnp.zeros_like(tr.a[l])
            continue
        if l == L and output_delta:  # δ^L given: nothing reads layer L, so g is all of it
            d = delta[l] = g
        else:
            d = delta[l] = dL_dphi[l] * activations.dphi(layer.activations, tr.a[l])  # (2)
        blocks = [(s, rows) for s, rows in net.blocks(l) if s != 0 or inputs]  # φ^0 = x
        if not blocks:
            continue
        # (3): Σ_k w^l_jk δ^l_k for the rows j ≥ 1, as W δ for one sample (no transposed copy)
        if d.ndim == 1:
            back = (w @ d)[1:] if bias_row else w @ d
        elif not bias_row:
            back = d @ w.T
        elif homogeneous(layer, N):  # the whole of w, then drop row 0: no copy of w[1:]
            back = (d @ w.T)[..., 1:]
        else:
            back = d @ w[1:].T
        for s, rows in blocks:
            part = back[..., rows.start - 1:rows.stop - 1]  # rows of W count from j = 1
            dL_dphi[s] = part if dL_dphi[s] is None else dL_dphi[s] + part
    if inputs:  # every layer reads x through some path, so dL_dphi[0] is set
        delta[0] = dL_dphi[0]
    return tuple(delta)


def outer_sum(x: jax.Array, d: jax.Array) -> jax.Array:
    """``Σ_i x_i ⊗ d_i = xᵀ d``, shape ``(fan_in, N_l)``, for ``x (N, fan_in)``, ``d (N, N_l)``.

    Computed as ``(dᵀ x)ᵀ``, the order of JAX's own transpose rule for a matrix product: for a
    layer of one neuron XLA:CPU then calls its matrix-vector kernel, where ``xᵀ d`` copies
    ``x`` transposed into a loop (13× slower for 64 × 512 inputs); otherwise they are the same.
    """
    return (d.T @ x).T


def weight_gradients(net: Network, tr: Trace, delta: tuple) -> Params:
    """``∂L/∂w^l = [Σ_i δ^l ; φ_inᵀ δ^l]``: outer products with the homogenised inputs.

    In the form that the forward pass took for the layer (:func:`bpjax.forward.homogeneous`):
    ``[1 | φ_in]ᵀ δ`` in one product with the same homogenised inputs, or ``[Σ_i δ ; φ_inᵀ δ]``
    concatenated (a copy of the gradient, ``(1 + fan_in) × N_l``).
    """
    grads = []
    for l, layer in enumerate(net.layers, start=1):
        d = delta[l]
        x = layer_inputs(net, tr.phi, l)
        if homogeneous(layer, d.shape[0]):
            grad = outer_sum(homogenised(x, layer.bias), d)  # ∂a^l_r/∂w^l_pr = φ^{l-1}_p, φ_0 = 1
        else:
            gw = outer_sum(x, d)  # ∂a^l_r/∂w^l_pr = φ^{l-1}_p
            gb = d.sum(axis=0, keepdims=True)  # ∂a^l_r/∂w^l_0r = φ^{l-1}_0 = 1
            if not layer.bias:
                gb = jnp.zeros_like(gb)
            grad = jnp.concatenate([gb, gw], axis=0)
        if layer.adjacency is not None:
            grad = jnp.where(net.structure(l), grad, jnp.zeros((), grad.dtype))
        grads.append(grad)
    return tuple(grads)


def sample_weight_gradients(net: Network, tr: Trace, delta: tuple) -> tuple[tuple, tuple]:
    """One sample's ``(∂/∂w0, ∂/∂W)``: ``δ^l`` and the rank-1 ``φ_in ⊗ δ^l``, split like
    :func:`bpjax.forward.split`; ``tr`` and ``delta`` hold vectors ``(N_l,)``."""
    g0, gW = [], []
    for l, layer in enumerate(net.layers, start=1):
        d = delta[l]
        g0.append(d if layer.bias else jnp.zeros_like(d))  # ∂a^l_r/∂w^l_0r = 1
        gw = jnp.outer(layer_inputs(net, tr.phi, l), d)  # ∂a^l_r/∂w^l_pr = φ^{l-1}_p
        if layer.adjacency is not None:
            gw = jnp.where(net.structure(l)[1:], gw, jnp.zeros((), gw.dtype))
        gW.append(gw)
    return tuple(g0), tuple(gW)


def _per_example_gradients(net: Network, tr: Trace, delta: tuple) -> Params:
    """Per-sample ``[δ^l_i ; φ_in,i ⊗ δ^l_i]``, shape ``(N, 1 + fan_in, N_l)`` per layer."""
    grads = []
    for l, layer in enumerate(net.layers, start=1):
        # [1 | φ_in,i] ⊗ δ^l_i in one product: copying the inputs costs N × (1 + fan_in),
        # concatenating the per-sample gradients would cost N × (1 + fan_in) × N_l.
        x = homogenised(layer_inputs(net, tr.phi, l), layer.bias)
        grad = jnp.einsum("np,nr->npr", x, delta[l])
        if layer.adjacency is not None:
            grad = jnp.where(net.structure(l), grad, jnp.zeros((), grad.dtype))
        grads.append(grad)
    return tuple(grads)


def loss_deltas(net: Network, W: Sequence, tr: Trace, Y, loss: Loss = SQUARED, scale=None,
                *, bias_row: bool = True) -> tuple:
    """``δ^l`` from the loss's output error: ``scale · ∂ℓ_i/∂φ^L`` (or ``scale`` times its
    fused ``δ^L``), then equations (2)-(3) by :func:`delta_rule` (``W`` as there).

    ``scale`` multiplies each sample's error and broadcasts against it: ``None`` leaves sample
    ``i``'s term without the ``1/N`` (what Algorithm 1 steps along), ``1/N`` or ``s_i / Σ s`` as
    a column ``(N, 1)`` gives the deltas of the (weighted) mean, a scalar those of one sample.
    """
    e, fused = output_error(loss, net, tr, Y)
    return delta_rule(net, W, tr, e if scale is None else scale * e, bias_row=bias_row,
                      output_delta=fused)


def backward_deltas(net: Network, params: Params, tr: Trace, Y, s=None,
                    loss: Loss = SQUARED) -> tuple:
    """``δ^l = ∂L/∂a^l`` of the loss for a batch's trace: ``∂L/∂φ^L = s_i/Σs · ∂ℓ_i/∂φ^L`` (or
    the fused ``δ^L``), then equations (2)-(3); ``params`` structural, with their bias rows."""
    N = tr.phi[0].shape[0]
    return loss_deltas(net, params, tr, Y, loss, sample_scale(N, tr.phi[0].dtype, s)[:, None])


def loss_and_gradients(net: Network, params: Params, X, Y, s=None, loss: Loss = SQUARED):
    """The loss and ``∂L/∂θ`` for prepared arrays ``X (N, D)``, ``Y (N, d)``; pure, jittable."""
    params = structural(net, params)
    tr = propagate(net, params, X)
    delta = backward_deltas(net, params, tr, Y, s, loss)
    return weighted_mean(sample_loss(loss, net, tr, Y), s), weight_gradients(net, tr, delta)


loss_and_gradients_jit = jax.jit(loss_and_gradients, static_argnums=(0, 5))


def loss_by_hand(net: Network, X, Y, s=None, *, scale=1.0, base: Params | None = None,
                 masks=None, loss: Loss = SQUARED):
    """``f(θ) = scale · L(X × Y; θ)`` for optax optimizers that differentiate the loss
    themselves (line searches call ``jax.value_and_grad(value_fn)``): a ``jax.custom_vjp``
    whose backward pass is this module's, never autodiff through the network.

    With ``masks`` (per layer a boolean array, True where a weight may change, or None), ``f``
    reads the masked-out weights from ``base`` whatever it is given, and their gradient is 0.

    Returns:
      ``(f, value_and_grads)``: ``f(params)`` the scalar, ``value_and_grads(params)`` it and
      its gradient, both by hand.
    """
    def merged(p):
        if masks is None:
            return tuple(p)
        return tuple(w if m is None else jnp.where(m, w, b) for w, b, m in zip(p, base, masks))

    def value_and_grads(p):
        value, grads = loss_and_gradients(net, merged(p), X, Y, s, loss)
        if masks is not None:
            grads = tuple(g if m is None else jnp.where(m, g, jnp.zeros((), g.dtype))
                          for g, m in zip(grads, masks))
        return scale * value, tuple((scale * g).astype(g.dtype) for g in grads)

    @jax.custom_vjp
    def f(p):
        return value_and_grads(p)[0]

    def f_bwd(grads, cotangent):  # ∂f/∂θ, scaled by the incoming cotangent
        return (tuple((cotangent * g).astype(g.dtype) for g in grads),)

    f.defvjp(value_and_grads, f_bwd)
    return f, value_and_grads


@supervised
def _per_example_core(net, params, X, Y, s, loss):
    params = structural(net, params)
    tr = propagate(net, params, X)
    return _per_example_gradients(net, tr, loss_deltas(net, params, tr, Y, loss))


@supervised
def _deltas_core(net, params, X, Y, s, loss):
    params = structural(net, params)
    tr = propagate(net, params, X)
    return backward_deltas(net, params, tr, Y, s, loss)


_value_and_gradients_core = supervised(loss_and_gradients)


@supervised
def _gradients_core(net, params, X, Y, s, loss):
    return loss_and_gradients(net, params, X, Y, s, loss)[1]


def value_and_backprop(net: Network, params: Params, X, Y, weights=None, *, loss="squared"):
    """The loss and its gradient, from one forward and one hand-written backward pass.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``; integer
        class labels ``(N,)`` when ``d > 1``, as in :func:`bpjax.loss`.
      weights: optional per-sample weights ``(N,)``, as in :func:`bpjax.loss`.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``, equation (1)),
        as in :func:`bpjax.loss`.

    Returns:
      ``(loss, grads)``: a scalar and ``∂L/∂θ`` with the structure and shapes of ``params``,
      ``grads[l-1][j, k] == ∂L/∂w^l_jk``.
    """
    check_network(net, "value_and_backprop")
    return call_supervised(_value_and_gradients_core, net, params, X, Y, weights,
                           resolve_loss(net, loss))


def backprop(net: Network, params: Params, X, Y, weights=None, *, loss="squared") -> Params:
    """The gradient ``∂L/∂θ`` of the loss, computed by hand through equations (2)-(4).

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``; integer
        class labels ``(N,)`` when ``d > 1``, as in :func:`bpjax.loss`.
      weights: optional per-sample weights ``(N,)``, as in :func:`bpjax.loss`.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``, equation (1)).

    Returns:
      ``grads`` shaped like ``params``: ``grads[l-1][j, k] == ∂L/∂w^l_jk``.

    Values are not checked (no host sync): NaN or Inf in the inputs gives NaN or Inf; see
    :mod:`bpjax.data` for how to check them.
    """
    check_network(net, "backprop")
    return call_supervised(_gradients_core, net, params, X, Y, weights, resolve_loss(net, loss))


def per_example_backprop(net: Network, params: Params, X, Y, *, loss="squared") -> Params:
    """Per-sample gradients ``∂ℓ_i/∂w = Σ_r ∂ℓ_i/∂φ^L_r · ∂φ^L_r/∂w`` (the loss's term of sample
    ``i``, without the ``1/N``); for loss (1), ``Σ_r (φ^L_r(x_i) − y_{i,r}) ∂φ^L_r/∂w``.

    This is the quantity Algorithm 1 steps along, ``∂L/∂w(x_i)``, so ``backprop == mean over
    i``. Computed by one batched backward pass, not by ``vmap`` over autodiff.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``); integer class labels ``(N,)`` when
        ``d > 1``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``).

    Returns:
      A tuple with, for each layer, an array ``(N, 1 + fan_in, N_l)``.
    """
    check_network(net, "per_example_backprop")
    return call_supervised(_per_example_core, net, params, X, Y, None, resolve_loss(net, loss))


def deltas(net: Network, params: Params, X, Y, weights=None, *, loss="squared") -> tuple:
    """The backpropagated errors ``δ^l = ∂L/∂a^l`` of every layer.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``; integer
        class labels ``(N,)`` when ``d > 1``.
      weights: optional per-sample weights ``(N,)``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``).

    Returns:
      A tuple of length ``L + 1``: ``delta[0]`` is None and ``delta[l]`` has shape ``(N, N_l)``;
      row ``i`` is sample ``i``'s contribution (it includes the ``1/N`` of the loss).
    """
    check_network(net, "deltas")
    return call_supervised(_deltas_core, net, params, X, Y, weights, resolve_loss(net, loss))
