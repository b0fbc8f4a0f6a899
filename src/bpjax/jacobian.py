"""The paper's derivatives as objects: the per-sample Jacobian ``∂φ_θ(x_i)/∂w``, by hand.

bpjax's backward pass only ever multiplies ``∂φ_θ[k]/∂w^m_pr (x_i)`` by the residual; here it is
returned whole, for every sample ``i``, output ``k`` and weight ``w^m_pr``:

    J[m-1][i, k, p, r] = ∂φ_θ(x_i)[k] / ∂w^m_pr,      J[m-1].shape == (N, d, 1 + fan_in, N_m).

Equation (4) gives it a structure that both modes use. ``w^m_pr`` enters the network only
through ``a^m_r``, where ``∂a^m_r/∂w^m_pr = φ^{m-1}_p`` (``= 1`` for the bias ``p = 0``), so

    ∂φ^L_k/∂w^m_pr = ∂φ^L_k/∂a^m_r · φ^{m-1}_p                                 (the last row)

and what remains to compute is ``∂φ^L_k/∂a^m_r``, for every pair of a neuron ``(m, r)`` and an
output ``k``: either upward from layer ``m`` (forward) or downward from the output (reverse).

| paper                                                        | code                          |
| ------------------------------------------------------------ | ----------------------------- |
| (2) ``∂φ^l_k/∂w^m_pr = ∂φ^l_k/∂a^l_k · ∂a^l_k/∂w^m_pr``      | ``S[l] = A[l] * dphi(a[l])``  |
| (3) ``∂a^l_k/∂w^m_pr = Σ_j w^l_jk ∂φ^{l-1}_j/∂w^m_pr``, l > m | ``A[l] = Σ_s S[s] @ w[rows]`` |
| l = m: ``∂a^m_k/∂w^m_pr = φ^{m-1}_p`` if ``k = r``, else 0   | seed ``A[m] = I``, ``× φ̃_p``  |
| (4) ``∂a^l_k/∂w^m_pr = 0`` for ``l < m`` or no path           | nothing propagated: exact 0   |
| (2)-(3) backpropagated, one output ``k`` at a time            | ``delta_rule(g = e_k)``       |
| ``∂φ^L_k/∂w^m_pr = ∂φ^L_k/∂a^m_r · φ^{m-1}_p``                | ``einsum(φ̃^{m-1}, S[L])``     |

**mode="forward"** is equations (2)-(3) as the paper writes them, Algorithm 2's recursion
vectorised: the sensitivities ``∂φ^l/∂w^m`` are propagated upward from layer ``m``, through every
layer on a path to the output; in a DAG a layer sums what its sources bring. The recursion is
linear in its seed, and by the row ``l = m`` the seed of ``w^m_pr`` is ``φ^{m-1}_p`` times the
unit vector ``e_r``: propagating the ``N_m`` unit seeds (``S[l][i, r, k] = ∂φ^l_k/∂a^m_r``) and
multiplying by ``φ^{m-1}_p`` at the end gives all ``(1 + fan_in) N_m`` sensitivities of layer
``m`` for the price of ``N_m``. Its tangents are the network's neurons, not its weights.

**mode="reverse"** runs the backward pass of :mod:`bpjax.backward` (:func:`delta_rule`) once per
output, all ``d`` at once: the cotangent of output ``k`` is the one-hot ``e_k``, and
``δ^m = ∂φ^L_k/∂a^m`` for every ``k`` comes out of one batched sweep.

**Cost** (multiply-adds per sample; :func:`costs` counts them for a network). Writing ``c_l =
(Σ_{s ∈ sources(l), s ≠ 0} N_s + 1) N_l`` for one tangent's pass through layer ``l``:

* forward: ``Σ_m N_m Σ_{l > m on a path from m to L} c_l`` — every neuron's tangent goes up;
* reverse: ``d Σ_{l on a path to L} c_l`` — every output's cotangent goes down;
* both then write ``J``: ``d × (number of weights)`` products ``φ̃^{m-1}_p ∂φ^L_k/∂a^m_r``.

So reverse wins unless ``d`` is large next to the widths (``jax.jacfwd``'s tangents would be the
weights, ``P`` of them, against ``jax.jacrev``'s ``d`` cotangents; equation (4) brings forward
mode down to the neurons). ``mode="auto"`` takes the cheaper of the two counts. Memory: ``J``
itself, ``N d P``, plus ``N Σ_l N_m N_l`` (forward, one ``m`` at a time) or ``N d Σ_l N_l``
(reverse) of intermediates.

Structural zeros (``bias=False``, absent connections) are exactly 0 in ``J``. No automatic
differentiation is used: ``jax.jacrev``/``jax.jacfwd`` check this module in the tests only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bpjax import activations
from bpjax.backward import delta_rule
from bpjax.forward import Trace, homogenised, layer_inputs, prepare, propagate
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["MODES", "costs", "jacobian", "jacobian_of_params"]

MODES = ("auto", "forward", "reverse")


def _to_output(net: Network) -> tuple[bool, ...]:
    """``to_output[l]``: whether a path leads from layer ``l`` (0 is x) to the output ``L``."""
    L = net.depth
    reach = [False] * (L + 1)
    reach[L] = True
    for l in range(L, 0, -1):
        if reach[l]:
            for s in net.sources(l):
                reach[s] = True
    return tuple(reach)


def _from_layer(net: Network, m: int) -> tuple[bool, ...]:
    """``below[l]``: whether a path leads from layer ``m`` up to layer ``l`` (``m`` included)."""
    below = [False] * (net.depth + 1)
    below[m] = True
    for l in range(m + 1, net.depth + 1):
        below[l] = any(below[s] for s in net.sources(l))
    return tuple(below)


def _pass_cost(net: Network, l: int, sources) -> int:
    """``c_l``: one tangent's multiply-adds through layer ``l`` from the given sources."""
    return (sum(net.sizes[s] for s in sources) + 1) * net.sizes[l]


@functools.cache  # a Network is hashable: counted once per network
def _costs(net: Network) -> tuple[int, int]:
    c = costs(net)
    return c["forward"], c["reverse"]


def costs(net: Network) -> dict[str, int]:
    """Multiply-adds per sample of each mode's propagation (see the module docstring).

    Writing ``J`` (``d × number of weights`` products per sample) is common to both modes and
    not counted.

    Returns:
      ``{"forward": ..., "reverse": ...}``.
    """
    to_output = _to_output(net)
    forward = 0
    for m in range(1, net.depth + 1):
        if not to_output[m]:
            continue
        below = _from_layer(net, m)
        forward += net.sizes[m] * net.sizes[m]  # the seed's (2): N_m tangents through dphi
        for l in range(m + 1, net.depth + 1):
            if below[l] and to_output[l]:
                forward += net.sizes[m] * _pass_cost(net, l, [s for s in net.sources(l)
                                                              if below[s]])
    reverse = net.outputs * sum(
        _pass_cost(net, l, [s for s in net.sources(l) if s != 0])
        for l in range(1, net.depth + 1) if to_output[l])
    return {"forward": forward, "reverse": reverse}


def resolve_mode(net: Network, mode: str) -> str:
    """``"forward"`` or ``"reverse"``: ``mode`` itself, or the cheaper one for ``"auto"``."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mode != "auto":
        return mode
    forward, reverse = _costs(net)
    return "forward" if forward < reverse else "reverse"


def _dphiL_da_forward(net: Network, params: Params, tr: Trace, m: int) -> jax.Array:
    """``∂φ^L_k/∂a^m_r`` as ``(N, N_m, d)``: unit seeds at layer ``m``, (2)-(3) upward."""
    N, N_m = tr.a[m].shape[0], net.sizes[m]
    to_output, below = _to_output(net), _from_layer(net, m)
    S: list = [None] * (net.depth + 1)  # S[l][i, r, k] = ∂φ^l_k/∂a^m_r
    # l = m: ∂a^m_k/∂a^m_r = [k = r], then (2)
    dphi_m = activations.dphi(net.layer(m).activations, tr.a[m])
    S[m] = jnp.eye(N_m, dtype=dphi_m.dtype) * dphi_m[:, None, :]
    for l in range(m + 1, net.depth + 1):
        if not (below[l] and to_output[l]):
            continue
        w = params[l - 1]
        A = None  # (3): Σ_j w^l_jk ∂φ^{l-1}_j/∂a^m_r, summed over the sources in a DAG
        for s, rows in net.blocks(l):
            if S[s] is not None:
                part = S[s] @ w[rows]
                A = part if A is None else A + part
        S[l] = A * activations.dphi(net.layer(l).activations, tr.a[l])[:, None, :]  # (2)
    if S[net.depth] is None:  # no path from layer m to the output: (4)
        return jnp.zeros((N, N_m, net.outputs), tr.a[m].dtype)
    return S[net.depth]


def _dphiL_da_reverse(net: Network, params: Params, tr: Trace) -> tuple:
    """``∂φ^L_k/∂a^m_r`` as ``(d, N, N_m)`` for every ``m``: one sweep, a one-hot per output."""
    N, d = tr.phi[-1].shape
    e = jnp.eye(d, dtype=tr.phi[-1].dtype)[:, None, :]  # e[k] = ∂φ^L/∂φ^L_k: the one-hot e_k
    delta = delta_rule(net, params, tr, jnp.broadcast_to(e, (d, N, d)), bias_row=True)
    return tuple(jnp.broadcast_to(delta[m], (d, N, net.sizes[m])) for m in range(1, net.depth + 1))


def jacobian_of_params(net: Network, params: Params, X: jax.Array, mode: str) -> Params:
    """The per-layer Jacobians for prepared ``X (N, D)``; ``mode`` "forward" or "reverse".

    Pure and jittable (``net`` and ``mode`` static); ``params`` need not be structural.
    """
    params = structural(net, params)
    tr = propagate(net, params, X)
    if mode == "reverse":
        G = _dphiL_da_reverse(net, params, tr)
    out = []
    for m, layer in enumerate(net.layers, start=1):
        x = homogenised(layer_inputs(net, tr.phi, m), layer.bias)  # φ̃^{m-1}, φ̃_0 = 1 (or 0)
        if mode == "forward":
            J = jnp.einsum("ip,irk->ikpr", x, _dphiL_da_forward(net, params, tr, m))
        else:
            J = jnp.einsum("ip,kir->ikpr", x, G[m - 1])
        if layer.adjacency is not None:
            J = jnp.where(net.structure(m), J, jnp.zeros((), J.dtype))
        out.append(J)
    return tuple(out)


_jacobian_jit = jax.jit(jacobian_of_params, static_argnums=(0, 3))


def jacobian(net: Network, params: Params, X, mode: str = "auto") -> Params:
    """The per-sample Jacobian of the network's output with respect to every weight.

    ``J[m-1][i, k, p, r] = ∂φ_θ(x_i)[k] / ∂w^m_pr``: the derivatives that §1.3.1 lists one by
    one, for every sample, computed by hand (equations (2)-(4)); see the module docstring for
    the two modes and their cost.

    Args:
      net: the network (any DAG).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      mode: ``"forward"`` (the paper's recursion, upward from each layer), ``"reverse"``
        (one backward sweep per output, batched), or ``"auto"``: the cheaper by
        :func:`costs`.

    Returns:
      A tuple with one array per layer, ``(N, d, 1 + fan_in, N_l)`` (``(d, 1 + fan_in, N_l)``
      for one ``x``). Structural zeros are exactly 0.

    Raises:
      ValueError, TypeError: ``params`` or ``X`` do not fit ``net``, or an unknown ``mode``.

    Example:
      >>> import jax, bpjax as bp
      >>> net = bp.Network(2, [bp.Layer(2, ("identity", "square")),
      ...                      bp.Layer(1, "identity", bias=False)])
      >>> J = bp.jacobian(net, bp.init(net, jax.random.key(0)), jax.numpy.ones((5, 2)))
      >>> [j.shape for j in J]
      [(5, 1, 3, 2), (5, 1, 3, 1)]
    """
    check_network(net, "jacobian")
    mode = resolve_mode(net, mode)
    params, X2, single = prepare(net, params, X)
    J = _jacobian_jit(net, params, X2, mode)
    return tuple(j[0] for j in J) if single else J
