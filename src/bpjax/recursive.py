"""Algorithm 2 of the paper, as written: the recursive backpropagation algorithm.

A slow, literal reference, in plain Python over float64 numbers. Each function below is one
function of Algorithm 2; the comments give its line numbers.

| Algorithm 2                                  | here                          |
| -------------------------------------------- | ----------------------------- |
| line 23, forward pass stores ``a``, ``φ``     | ``_Sample.__init__``          |
| lines 1-2, ``∂φ^l_k/∂w^m_pr``                 | ``_Sample.dphi_dw``           |
| lines 4-8, ``∂φ^l_k/∂a^l_k``                  | ``_Sample.dphi_da``           |
| lines 10-15, ``∂a^l_k/∂w^m_pr``               | ``_Sample.da_dw``             |
| lines 17-18, ``∂L/∂w^m_pr(x_i)``              | ``_Sample.dL_dw``             |
| line 17's ``φ^L_k − y_k``: ``∂ℓ_i/∂φ^L_k``      | ``_Sample.e`` (fused: ``δ^L``) |
| ``∂L/∂w = 1/N Σ_i ∂L/∂w(x_i)``                | :func:`recursive_grad`        |

Nothing is memoised: the recursion re-walks every path from ``(L, k)`` down to layer ``m``
for every weight, so its cost grows with the number of paths (exponentially with depth).
That cost is the point the experiments make; use it on small networks only.

For a DAG, line 11's sum over ``j`` runs over the layer's concatenated inputs, each of which
is a neuron of some earlier layer ``s`` (or the input ``x``, which does not depend on θ).
"""

from __future__ import annotations

import jax
import numpy as np

from bpjax import activations
from bpjax.data import as_inputs, as_targets
from bpjax.forward import Trace
from bpjax.loss import resolve_loss
from bpjax.losses import SQUARED, Loss, check_targets, output_error
from bpjax.network import Network, check_network, is_int
from bpjax.params import Params, check_params

__all__ = ["recursive_dphi_dw", "recursive_grad"]


class _Sample:
    """Algorithm 2 for one sample ``x_i``, with the forward pass of line 23 stored."""

    def __init__(self, net: Network, w: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                 loss: Loss = SQUARED):
        self.net, self.w, self.y = net, w, y
        # line 23: the forward pass computes and stores a^l_k(x_i) and φ^l_k(x_i).
        self.phi, self.a, self.dphi = [x], [None], [None]
        with jax.enable_x64(True):
            for l in range(1, net.depth + 1):
                acts = net.layer(l).activations
                phi_in = np.concatenate([[1.0], *(self.phi[s] for s in net.sources(l))])
                a = phi_in @ w[l - 1]
                self.a.append(a)
                self.phi.append(np.asarray(activations.phi(acts, a), np.float64))
                self.dphi.append(np.asarray(activations.dphi(acts, a), np.float64))
            # line 17's output error: ∂ℓ_i/∂φ^L_k, or ∂ℓ_i/∂a^L_k for a loss's fused form
            e, self.fused = output_error(loss, net, Trace(tuple(self.a), tuple(self.phi)), y)
            self.e = np.asarray(e, np.float64)

    def unit(self, l: int, j: int) -> tuple[int, int]:
        """Input ``j ≥ 1`` of layer ``l`` as a neuron ``(s, i)`` of its source layer ``s``."""
        for s, rows in self.net.blocks(l):
            if rows.start <= j < rows.stop:
                return s, j - rows.start + 1
        raise IndexError(j)

    def phi_in(self, l: int, p: int) -> float:
        """``φ^{l-1}_p``: the homogenised input ``p`` of layer ``l`` (``p = 0`` gives 1)."""
        if p == 0:
            return 1.0
        s, i = self.unit(l, p)
        return self.phi[s][i - 1]

    def dphi_dw(self, l: int, k: int, m: int, p: int, r: int) -> float:
        """Lines 1-2: ``∂φ^l_k/∂w^m_pr = ∂φ^l_k/∂a^l_k · ∂a^l_k/∂w^m_pr``."""
        if l == 0:  # φ^0 = x_i does not depend on any weight
            return 0.0
        return self.dphi_da(l, k) * self.da_dw(l, k, m, p, r)

    def dphi_da(self, l: int, k: int) -> float:
        """Lines 4-8: the activation's derivative at the stored ``a^l_k(x_i)``."""
        return self.dphi[l][k - 1]

    def da_dw(self, l: int, k: int, m: int, p: int, r: int) -> float:
        """Lines 10-15: ``∂a^l_k/∂w^m_pr``."""
        if l > m:  # line 11: Σ_j w^l_jk ∂φ^{l-1}_j/∂w^m_pr (j = 0 is the constant 1)
            total = 0.0
            for j in range(1, self.w[l - 1].shape[0]):
                s, i = self.unit(l, j)
                total += self.w[l - 1][j, k - 1] * self.dphi_dw(s, i, m, p, r)
            return total
        if l == m:  # lines 12-14; line 15 (l = 1: x_i[p]) is the case m = 1 of line 13
            return self.phi_in(m, p) if k == r else 0.0
        return 0.0  # l < m: w^m_pr is not involved in a^l_k, equation (4)

    def dL_dw(self, m: int, p: int, r: int) -> float:
        """Lines 17-18: ``Σ_k ∂φ^L_k/∂w^m_pr(x_i) ∂ℓ_i/∂φ^L_k`` (for loss (1),
        ``∂ℓ_i/∂φ^L_k = φ^L_k(x_i) − y_i[k]``). With a loss's fused form the output error is
        ``∂ℓ_i/∂a^L_k`` and line 1's factor ``∂φ^L_k/∂a^L_k`` is already in it:
        ``Σ_k ∂a^L_k/∂w^m_pr(x_i) ∂ℓ_i/∂a^L_k``."""
        L = self.net.depth
        factor = self.da_dw if self.fused else self.dphi_dw
        return sum(
            factor(L, k, m, p, r) * self.e[k - 1]
            for k in range(1, self.net.outputs + 1)
        )


def _samples(net: Network, params, X, Y=None, loss: Loss = SQUARED):
    params = check_params(net, params)
    X2, single = as_inputs(net, X)
    # np.where, not a product with the mask: NaN or Inf stored in a structural zero is ignored,
    # as in bpjax.params.structural.
    w = [np.where(net.structure(l), np.asarray(p, np.float64), 0.0)
         for l, p in enumerate(params, start=1)]
    X2 = np.asarray(X2, np.float64)
    Y2 = np.zeros((len(X2), net.outputs)) if Y is None else as_targets(net, Y, len(X2), single)
    check_targets(loss, Y2)
    Y2 = np.asarray(Y2, np.float64)
    return w, [_Sample(net, w, x, y, loss) for x, y in zip(X2, Y2)]


def recursive_grad(net: Network, params: Params, X, Y, *, loss="squared"
                   ) -> tuple[np.ndarray, ...]:
    """``∂L/∂θ`` of the loss by the literal recursion of Algorithm 2, in float64 numpy.

    ``∂L/∂w^m_pr = 1/N Σ_i ∂L/∂w^m_pr(x_i)``, each term by lines 17-18, with line 17's
    ``φ^L_k − y_k`` generalised to the loss's ``∂ℓ_i/∂φ^L_k``. Structural zeros get 0.
    For small networks only: the cost grows with the number of paths through the network.

    Args:
      net: the network (any DAG).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``; integer
        class labels ``(N,)`` when ``d > 1``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``, equation (1)).

    Returns:
      A tuple of float64 numpy arrays shaped like ``params``.
    """
    check_network(net, "recursive_grad")
    loss = resolve_loss(net, loss)
    w, samples = _samples(net, params, X, Y, loss)
    grads = []
    for m in range(1, net.depth + 1):
        mask = net.structure(m)
        g = np.zeros(mask.shape)
        for p, r in zip(*np.nonzero(mask)):
            g[p, r] = sum(x.dL_dw(m, int(p), int(r) + 1) for x in samples) / len(samples)
        grads.append(g)
    return tuple(grads)


def recursive_dphi_dw(net: Network, params: Params, x, l: int, k: int, m: int, p: int, r: int):
    """One value of Algorithm 2's recursion: ``∂φ^l_k/∂w^m_pr(x)`` (lines 1-2).

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      x: one input ``(D,)``.
      l, k: the neuron, ``1 ≤ l ≤ L``, ``1 ≤ k ≤ N_l``.
      m, p, r: the weight ``w^m_pr``, ``0 ≤ p ≤ fan_in``, ``1 ≤ r ≤ N_m``.

    Returns:
      A Python float.
    """
    check_network(net, "recursive_dphi_dw")
    for name, v in zip("lkmpr", (l, k, m, p, r)):
        if not is_int(v):
            raise TypeError(f"l, k, m, p, r must be ints (paper numbering), got {name} = {v!r}")
    if not (1 <= l <= net.depth and 1 <= k <= net.sizes[l]):
        raise ValueError(f"neuron (l={l}, k={k}) is not in the network (sizes {net.sizes})")
    if not (1 <= m <= net.depth and 0 <= p < net.shapes[m - 1][0] and 1 <= r <= net.sizes[m]):
        raise ValueError(
            f"weight w^{m}_({p},{r}) is not in the network (params shapes {net.shapes})"
        )
    if np.shape(x) not in ((net.inputs,), (1, net.inputs)):
        raise ValueError(
            f"x must be one input of shape (D,) = ({net.inputs},), got shape {np.shape(x)}"
        )
    _, (sample,) = _samples(net, params, np.reshape(x, (1, net.inputs)))
    if not net.structure(m)[p, r - 1]:
        return 0.0
    return float(sample.dphi_dw(l, k, m, p, r))
