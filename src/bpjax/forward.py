"""The forward pass: a^l and φ^l for every layer (§1.1, and Algorithm 2, line 23).

| paper                                          | code                                    |
| ---------------------------------------------- | --------------------------------------- |
| ``φ^0_k = x_i[k]``                             | ``phi[0] = X``                          |
| ``a^l_k = Σ_{j=0}^{N_{l-1}} w^l_jk φ^{l-1}_j`` | ``a[l] = w[0] + phi_in @ w[1:]``, or    |
| with ``φ^{l-1}_0 = 1`` (homogenised input)     | ``a[l] = [1 | phi_in] @ w``             |
| ``φ^l_k = φ^l_k(a^l_k)``                       | ``phi[l] = activations.phi(acts, a[l])`` |
| ``φ_θ(x_i) = φ^L(x_i)``                        | ``forward(...) == phi[L]``              |

For a DAG, ``phi_in`` is the concatenation of the outputs of the layer's sources
(``Network.sources(l)``), which is ``φ^{l-1}`` for a feedforward network.

The two forms of ``a^l`` are the same sum; each copies something, which the shapes decide
(:func:`homogeneous`): the split form copies the rows ``w[1:]`` (``fan_in × N_l``), the
homogenised form the inputs ``[1 | phi_in]`` (``N × (1 + fan_in)``), so a small batch through
a wide layer takes the homogenised form. The backward pass and the gradients of
:mod:`bpjax.backward` follow the same choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax import activations
from bpjax.compilation import batched_jit
from bpjax.data import as_dtype, as_inputs, eager, float_dtype
from bpjax.network import Layer, Network, check_network
from bpjax.params import Params, check_params, structural

__all__ = ["Trace", "forward", "forward_trace"]


class Trace(NamedTuple):
    """Everything the forward pass computes, indexed by the paper's ``l``.

    Attributes:
      a: ``a[l]`` is ``a^l``, shape ``(N, N_l)`` for ``l = 1..L``; ``a[0]`` is ``None``
        (the input layer has no activation).
      phi: ``phi[l]`` is ``φ^l``, shape ``(N, N_l)`` for ``l = 0..L``; ``phi[0]`` is ``X``
        and ``phi[L]`` is the network's output ``φ_θ(X)``.

    With a single ``x`` of shape ``(D,)`` every array drops its leading ``N`` axis.
    """

    a: tuple
    phi: tuple


def layer_inputs(net: Network, phi: Sequence, l: int) -> jax.Array:
    """The inputs ``φ^{l-1}_{1..}`` of layer ``l``: its sources' outputs, concatenated."""
    sources = net.sources(l)
    if len(sources) == 1:
        return phi[sources[0]]
    return jnp.concatenate([phi[s] for s in sources], axis=-1)


def split(params: Params) -> tuple[tuple, tuple]:
    """``(w0, W)``: the biases ``w0[l-1] = w^l_0·`` ``(N_l,)`` and ``W[l-1] = w^l_{j≥1,·}``."""
    return tuple(w[0] for w in params), tuple(w[1:] for w in params)


def join(w0: Sequence, W: Sequence) -> Params:
    """The inverse of :func:`split`: ``params[l-1] = [w0[l-1] ; W[l-1]]``."""
    return tuple(jnp.concatenate([b[None], w], axis=0) for b, w in zip(w0, W))


_BROADCAST_MAX = 64  # weights of a layer whose batched product is a broadcast multiply and sum


def _weighted_sum(phi: jax.Array, w) -> jax.Array:
    """``Σ_{j≥1} φ_j w_jk`` for ``phi (..., fan_in)`` and ``w (fan_in, N_l)``.

    For a batch through a small layer (at most ``_BROADCAST_MAX`` weights) the sum is a
    broadcast multiply and a reduction: XLA:CPU fuses it with what follows, where a matrix
    product with an inner dimension of a few entries is slow, and under ``jax.vmap`` (many
    models, :func:`bpjax.sweep`) the product of every model would be transposed afterwards.
    """
    if phi.ndim > 1 and isinstance(w, jax.Array) and w.size <= _BROADCAST_MAX:
        return (phi[..., :, None] * w).sum(axis=-2)
    return phi @ w


def homogenised(phi_in: jax.Array, bias: bool) -> jax.Array:
    """``[φ_0 | φ_in]``: ``phi_in (..., fan_in)`` with the constant input ``φ^{l-1}_0`` first.

    ``φ_0 = 1`` (the paper's homogenised input), or ``0`` for a layer without bias, whose
    ``w^l_0k`` is a structural zero: it then takes no part, exactly.
    """
    phi_0 = jnp.full((*phi_in.shape[:-1], 1), 1 if bias else 0, phi_in.dtype)
    return jnp.concatenate([phi_0, phi_in], axis=-1)


def homogeneous(layer: Layer, N: int) -> bool:
    """Whether a batch of ``N`` samples goes through ``layer`` in the homogenised form.

    Only when the inputs' copy, ``N × (1 + fan_in)``, is well below the weights' copy it
    replaces, ``fan_in × N_l``: at comparable sizes neither form measured faster, hence the
    margin ``4 N ≤ N_l``.
    """
    return 4 * N <= layer.size


def _forward(net: Network, X: jax.Array, activation) -> Trace:
    """The trace for ``X``, given ``activation(l, layer, phi_in) = a^l``."""
    a, phi = [None], [X]
    for l, layer in enumerate(net.layers, start=1):
        a_l = activation(l, layer, layer_inputs(net, phi, l))
        a.append(a_l)
        phi.append(activations.phi(layer.activations, a_l))
    return Trace(tuple(a), tuple(phi))


def propagate_split(net: Network, w0: Sequence | None, W: Sequence, X: jax.Array) -> Trace:
    """The forward trace for ``X`` of shape ``(..., D)`` from split, structural weights.

    A per-sample step keeps the bias row ``w0`` apart from the rows ``W`` (``j ≥ 1``) so that
    it works on vectors and updates each array in place; with ``w0=None``, ``W[l-1]`` applies
    the bias itself (``phi_in @ W[l-1]`` is all of ``a^l``: Algorithm 1's weights objects).
    """
    def activation(l, layer, phi_in):
        a_l = _weighted_sum(phi_in, W[l - 1])
        return a_l + w0[l - 1] if layer.bias and w0 is not None else a_l

    return _forward(net, X, activation)


def propagate(net: Network, params: Params, X: jax.Array) -> Trace:
    """The forward trace for ``X`` of shape ``(..., D)``, params already structural."""
    N = X.size // X.shape[-1]

    def activation(l, layer, phi_in):
        w = params[l - 1]
        if homogeneous(layer, N):  # a^l_k = Σ_{j=0} w^l_jk φ^{l-1}_j, φ^{l-1}_0 = 1
            return homogenised(phi_in, layer.bias) @ w
        a_l = _weighted_sum(phi_in, w[1:])
        return a_l + w[0] if layer.bias else a_l

    return _forward(net, X, activation)


def prepare(net: Network, params, X):
    """Checks shapes, promotes to one float dtype; returns ``(params, X (N, D), single)``."""
    params = check_params(net, params)
    X, single = as_inputs(net, X)
    dtype = float_dtype(X, *params)
    return tuple(as_dtype(w, dtype) for w in params), as_dtype(X, dtype), single


@batched_jit(static_argnums=0)
def _trace_jit(net, params, X):
    params, X, single = prepare(net, params, X)  # checked when traced: see bpjax.data.eager
    tr = propagate(net, structural(net, params), X)
    return jax.tree.map(lambda v: v[0], tr) if single else tr


def forward_trace(net: Network, params: Params, X) -> Trace:
    """The forward pass, keeping ``a^l`` and ``φ^l`` of every layer.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.

    Returns:
      A :class:`Trace` with ``a[l]`` and ``phi[l]`` of shape ``(N, N_l)`` (``(N_l,)`` for one x).
    """
    check_network(net, "forward_trace")
    return eager(_trace_jit, prepare, net, params, X)


@batched_jit(static_argnums=0)
def _forward_jit(net, params, X):
    params, X, single = prepare(net, params, X)  # checked when traced: see bpjax.data.eager
    out = propagate(net, structural(net, params), X).phi[-1]
    return out[0] if single else out


def forward(net: Network, params: Params, X) -> jax.Array:
    """The network's output ``φ_θ(X) = φ^L``.

    Plain JAX: every transformation works through it with JAX's own derivatives (forward
    mode, ``jax.jacfwd``, ``jax.hessian``). :func:`bpjax.apply` gives the same value with the
    hand-written backward pass as its derivative under ``jax.grad``.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.

    Returns:
      ``φ_θ(X)`` of shape ``(N, d)``, or ``(d,)`` for one ``x``.

    Values are not checked (no host sync): NaN or Inf in the inputs gives NaN or Inf; see
    :mod:`bpjax.data` for how to check them.
    """
    check_network(net, "forward")
    return eager(_forward_jit, prepare, net, params, X)
