"""Chain-rule paths: ``∂φ^L_k/∂w^m_pr`` as a sum over paths through the graph (§1.2, §1.3.1).

Developing equations (2) and (3) down to layer ``m`` writes ``∂φ^L_k/∂w^m_pr`` as a sum of
products, one product per path from the weight to the output neuron ``(L, k)``. The paper
does this for figure 2 (the green path):

    ∂φ_θ/∂w^1_21 = ∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · ∂φ^1_1/∂a^1_1 · ∂a^1_1/∂w^1_21
                 = 1 · w^2_11 · 1 · x[2]

and equation (4) says why no other term survives: ``w^m_pr`` enters only ``a^m_r``, so a path
must start at neuron ``(m, r)`` and follow existing connections to ``(L, k)``. In a DAG a path
may skip layers; each hop from neuron ``(s, i)`` into ``(l, k)`` crosses the connection
``w^l_jk`` whose row ``j`` is where ``φ^s_i`` sits among layer ``l``'s inputs.

| paper                              | factor (its ``expression``)                           |
| ---------------------------------- | ----------------------------------------------------- |
| ``∂φ^l_k/∂a^l_k`` (Alg. 2, l. 4-8) | the activation's hand-written derivative at ``a^l_k`` |
| ``∂a^l_k/∂φ^s_i``, from (3)        | ``w^l_(j,k)``                                         |
| ``∂a^m_r/∂w^m_pr = φ^{m-1}_p``     | ``1`` for ``p = 0``, ``x[q]`` or ``φ^s_q`` otherwise   |
| (4): no path                       | an empty path list and a derivative of exactly 0      |

Values come from the stored forward trace (:func:`bpjax.forward_trace`) and the activations'
hand-written derivatives; nothing here uses automatic differentiation. The number of paths
grows exponentially with depth: this is for reading small networks, not for training.
Weights and neurons are in the paper's numbering: ``weight=(m, p, r)`` is ``w^m_pr`` with
``p = 0`` the bias and ``r`` counted from 1, i.e. ``params[m-1][p, r-1]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bpjax import activations
from bpjax.data import check_finite
from bpjax.forward import forward_trace
from bpjax.network import Network, check_network, is_int
from bpjax.params import Params, check_params, structural

__all__ = ["ChainPath", "ChainRule", "Factor", "chain_rule_paths", "row", "weight_paths"]

Neuron = tuple[int, int]  # (l, k), paper numbering: k from 1


class Factor(NamedTuple):
    """One local derivative of a chain-rule product.

    Attributes:
      symbol: the derivative as the paper writes it, e.g. ``"∂a^2_1/∂φ^1_1"``.
      expression: what it equals, e.g. ``"w^2_(1,1)"``, ``"1"``, ``"2·a^1_2"``, ``"x[2]"``.
      value: its value at the given ``x``.
    """

    symbol: str
    expression: str
    value: float


class ChainPath(NamedTuple):
    """One path from ``w^m_pr`` to ``φ^L_k`` and its product of local derivatives.

    Attributes:
      neurons: the neurons ``(l, k)`` crossed, from ``(m, r)`` to ``(L, k)``.
      factors: the local derivatives in the paper's order, output first:
        ``∂φ^L_k/∂a^L_k, ∂a^L_k/∂φ^s_j, ∂φ^s_j/∂a^s_j, …, ∂φ^m_r/∂a^m_r, ∂a^m_r/∂w^m_pr``.
      value: the product of the factors' values.
    """

    neurons: tuple[Neuron, ...]
    factors: tuple[Factor, ...]
    value: float

    def symbols(self) -> str:
        """``"∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · …"``."""
        return " · ".join(f.symbol for f in self.factors)

    def expression(self) -> str:
        """``"1 · w^2_(1,1) · 1 · x[2]"``."""
        return " · ".join(f.expression for f in self.factors)

    def numbers(self) -> str:
        """The factors' values, ``"1 · 0.5 · 1 · -0.3"``."""
        return " · ".join(f"{f.value:.6g}" for f in self.factors)

    def __str__(self) -> str:
        return f"{self.symbols()} = {self.expression()} = {self.numbers()} = {self.value:.6g}"


class ChainRule(NamedTuple):
    """``∂φ^L_k/∂w^m_pr(x)`` written as the sum over its chain-rule paths.

    Attributes:
      weight: ``(m, p, r)``, the weight ``w^m_pr`` (paper numbering).
      output: ``(L, k)``, the output neuron ``φ^L_k`` (``k`` from 1).
      paths: every path from the weight to ``φ^L_k``; empty when there is none.
      value: ``Σ_paths value`` ``= ∂φ^L_k/∂w^m_pr(x)``; exactly 0 without a path.
      exists: False when ``w^m_pr`` is a structural zero (no bias, absent connection).
    """

    weight: tuple[int, int, int]
    output: Neuron
    paths: tuple[ChainPath, ...]
    value: float
    exists: bool = True

    def __str__(self) -> str:
        m, p, r = self.weight
        L, k = self.output
        head = f"∂φ^{L}_{k}/∂w^{m}_({p},{r})"
        if not self.exists:
            return (f"{head} = 0: w^{m}_({p},{r}) is a structural zero (no such connection), "
                    f"so no path goes through it")
        if not self.paths:
            return (f"{head} = 0: no path leads from w^{m}_({p},{r}) to φ^{L}_{k}: w^{m}_({p},{r}) "
                    f"is not involved in computing it (equation (4))")
        n = len(self.paths)
        lines = [f"{head} = sum over {n} path{'s' if n > 1 else ''} = {self.value:.6g}"]
        for i, path in enumerate(self.paths, start=1):
            lines += [
                f"  path {i}: w^{m}_({p},{r}) → "
                + " → ".join(f"({l},{k})" for l, k in path.neurons),
                f"      {path.symbols()}",
                f"    = {path.expression()}",
                f"    = {path.numbers()}",
                f"    = {path.value:.6g}",
            ]
        return "\n".join(lines)


# --- validation -------------------------------------------------------------------------------

def check_weight(net: Network, weight) -> tuple[int, int, int]:
    if not isinstance(net, Network):
        raise TypeError(f"expected a bpjax.Network, got {type(net).__name__}")
    if (not isinstance(weight, (tuple, list)) or len(weight) != 3
            or not all(is_int(v) for v in weight)):
        raise TypeError(
            f"weight must be a tuple (m, p, r) of ints naming w^m_pr (paper numbering: p = 0 "
            f"is the bias, r counts from 1), got {weight!r}"
        )
    m, p, r = (int(v) for v in weight)
    if not 1 <= m <= net.depth:
        raise ValueError(
            f"weight w^{m}_({p},{r}) is not in the network: its layer m must be in "
            f"1..{net.depth}, got {m}"
        )
    rows, size = net.shapes[m - 1]
    if not (0 <= p < rows and 1 <= r <= size):
        raise ValueError(
            f"weight w^{m}_({p},{r}) is not in the network: layer {m} has rows p = 0..{rows - 1} "
            f"(0 the bias) and neurons r = 1..{size}"
        )
    return m, p, r


def check_output(net: Network, output, allow_all: bool) -> int | None:
    d = net.outputs
    if output is None:
        if d == 1:
            return 1
        if allow_all:
            return None
        raise ValueError(
            f"this network has d = {d} outputs: pass output=k with k in 1..{d}"
        )
    if not is_int(output) or not 1 <= output <= d:
        raise ValueError(
            f"output neuron k must be an int in 1..{d} (counted from 1), got {output!r}"
        )
    return int(output)


# --- the graph -------------------------------------------------------------------------------

def row(net: Network, l: int, s: int, i: int) -> int:
    """The row ``j`` of ``w^l`` that multiplies ``φ^s_i`` (``i`` from 1)."""
    for src, rows in net.blocks(l):
        if src == s:
            return rows.start + i - 1
    raise ValueError(f"layer {l} does not read layer {s}")


def source(net: Network, l: int, j: int) -> Neuron:
    """The neuron ``(s, i)`` whose output is input ``j ≥ 1`` of layer ``l``."""
    for s, rows in net.blocks(l):
        if rows.start <= j < rows.stop:
            return s, j - rows.start + 1
    raise ValueError(f"row {j} is not an input of layer {l}")


def hops(net: Network, neurons) -> tuple[tuple[int, int, int], ...]:
    """The connections ``(l, j, k)`` (``w^l_jk``, paper numbering) a path crosses, in order."""
    return tuple((l, row(net, l, s, i), k) for (s, i), (l, k) in zip(neurons, neurons[1:]))


def _successors(net: Network, s: int, i: int):
    """Neurons ``(l, k)`` that read ``φ^s_i`` through a connection that exists."""
    for l in net.consumers(s):
        column = net.structure(l)[row(net, l, s, i)]
        for k in np.flatnonzero(column):
            yield l, int(k) + 1


def _count_paths(net: Network, targets: set[Neuron]) -> list[np.ndarray]:
    """``count[l][k-1]``: the number of paths from neuron ``(l, k)`` to any target."""
    L = net.depth
    count = [None] * (L + 1)
    for l in range(L, 0, -1):
        c = np.array([1 if (l, k) in targets else 0 for k in range(1, net.sizes[l] + 1)],
                     dtype=object)  # Python ints: path counts can overflow int64
        for k in range(1, net.sizes[l] + 1):
            c[k - 1] += sum(count[t][u - 1] for t, u in _successors(net, l, k))
        count[l] = c
    return count


def weight_paths(net: Network, weight, output: int | None = None, *, max_paths: int = 10_000):
    """Every path through the graph from the weight ``w^m_pr`` to the output neuron ``φ^L_k``.

    Structure only (no values): a path starts at neuron ``(m, r)``, which ``w^m_pr`` feeds,
    and follows connections that exist (adjacency masks respected) up to ``(L, k)``.

    Args:
      net: the network (any DAG).
      weight: ``(m, p, r)`` for ``w^m_pr``, paper numbering (``p = 0`` the bias, ``r`` from 1).
      output: ``k`` in ``1..d``; ``None`` for the paths to every output, those of ``∂L/∂w``.
      max_paths: refuse (``ValueError``) to list more paths than this.

    Returns:
      A tuple of paths, each a tuple of neurons ``(l, k)`` from ``(m, r)`` to ``(L, k)``, in a
      fixed order; empty when the weight is a structural zero or lies on no path.
    """
    check_network(net, "weight_paths")
    m, p, r = check_weight(net, weight)
    k = check_output(net, output, allow_all=True)
    L = net.depth
    targets = {(L, k)} if k is not None else {(L, u) for u in range(1, net.outputs + 1)}
    if not net.structure(m)[p, r - 1]:
        return ()
    count = _count_paths(net, targets)
    total = count[m][r - 1]
    if total > max_paths:
        raise ValueError(
            f"w^{m}_({p},{r}) lies on {total} paths to the output, more than "
            f"max_paths={max_paths}; the number of paths grows exponentially with depth"
        )
    out: list[tuple[Neuron, ...]] = []

    def walk(path):
        node = path[-1]
        if node in targets:
            out.append(tuple(path))
        for nxt in _successors(net, *node):
            if count[nxt[0]][nxt[1] - 1]:
                walk([*path, nxt])

    walk([(m, r)])
    return tuple(out)


def chain_rule_paths(
    net: Network,
    params: Params,
    x,
    weight,
    output: int | None = None,
    *,
    max_paths: int = 10_000,
) -> ChainRule:
    """``∂φ^L_k/∂w^m_pr(x)`` as the sum over its chain-rule paths, each with its factors.

    Example (the paper's figure 2, the green path)::

        net = bp.Network(2, [bp.Layer(2, ("identity", "square")),
                             bp.Layer(1, "identity", bias=False)])
        print(bp.chain_rule_paths(net, params, x, weight=(1, 2, 1)))
        # ∂φ^2_1/∂w^1_(2,1) = sum over 1 path = ...
        #   path 1: w^1_(2,1) → (1,1) → (2,1)
        #       ∂φ^2_1/∂a^2_1 · ∂a^2_1/∂φ^1_1 · ∂φ^1_1/∂a^1_1 · ∂a^1_1/∂w^1_(2,1)
        #     = 1 · w^2_(1,1) · 1 · x[2]

    Args:
      net: the network (any DAG).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      x: one input ``(D,)``.
      weight: ``(m, p, r)`` for ``w^m_pr``, paper numbering (``p = 0`` the bias, ``r`` from 1),
        i.e. ``params[m-1][p, r-1]``.
      output: the output neuron ``k`` in ``1..d``; may be omitted when ``d = 1``.
      max_paths: refuse (``ValueError``) to list more paths than this.

    Returns:
      A :class:`ChainRule`; ``str()`` of it is a readable rendering. Its ``value`` is the sum
      of the paths' products, ``∂φ^L_k/∂w^m_pr(x)``: exactly 0 without a path (equation (4)).

    Raises:
      ValueError: a bad weight or output, ``x`` not of shape ``(D,)``, more than
        ``max_paths`` paths, or NaN/Inf in ``x`` or ``params`` (the values are read on the
        host anyway, so they are checked here, unlike in :func:`bpjax.forward`).
    """
    check_network(net, "chain_rule_paths")
    m, p, r = check_weight(net, weight)
    k = check_output(net, output, allow_all=False)
    params = check_params(net, params)
    if np.shape(x) not in ((net.inputs,), (1, net.inputs)):
        raise ValueError(
            f"x must be one input of shape (D,) = ({net.inputs},), got shape {np.shape(x)}"
        )
    # This reads values on the host anyway: NaN or Inf is an error here, not a NaN derivative.
    check_finite(x=x, **{f"params[{l - 1}] (layer {l})": w for l, w in enumerate(params, 1)})
    if not net.structure(m)[p, r - 1]:
        return ChainRule((m, p, r), (net.depth, k), (), 0.0, exists=False)
    neuron_paths = weight_paths(net, (m, p, r), k, max_paths=max_paths)
    if not neuron_paths:
        return ChainRule((m, p, r), (net.depth, k), (), 0.0)

    tr = forward_trace(net, params, np.reshape(x, (net.inputs,)))  # line 23: stored a, φ
    phi = [np.asarray(v) for v in tr.phi]
    w = [np.asarray(v) for v in structural(net, params)]
    dphi = [None] + [np.asarray(activations.dphi(net.layer(l).activations, tr.a[l]))
                     for l in range(1, net.depth + 1)]

    def dphi_da(l, k):
        name = net.layer(l).activations[k - 1].name
        return Factor(f"∂φ^{l}_{k}/∂a^{l}_{k}", activations.dphi_expression(name, l, k),
                      float(dphi[l][k - 1]))

    # ∂a^m_r/∂w^m_pr = φ^{m-1}_p: 1 for the bias, else the input that w^m_pr multiplies
    if p == 0:
        last = Factor(f"∂a^{m}_{r}/∂w^{m}_({p},{r})", "1", 1.0)
    else:
        s, q = source(net, m, p)
        last = Factor(f"∂a^{m}_{r}/∂w^{m}_({p},{r})", f"x[{q}]" if s == 0 else f"φ^{s}_{q}",
                      float(phi[s][q - 1]))

    paths = []
    for neurons in neuron_paths:
        factors = []
        for (s, i), (l, kk) in reversed(list(zip(neurons, neurons[1:]))):
            j = row(net, l, s, i)
            factors += [dphi_da(l, kk),
                        Factor(f"∂a^{l}_{kk}/∂φ^{s}_{i}", f"w^{l}_({j},{kk})",
                               float(w[l - 1][j, kk - 1]))]
        factors += [dphi_da(m, r), last]
        paths.append(ChainPath(neurons, tuple(factors), math.prod(f.value for f in factors)))
    return ChainRule((m, p, r), (net.depth, k), tuple(paths), math.fsum(pa.value for pa in paths))
