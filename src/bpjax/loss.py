"""The loss ``L(X × Y; θ)``: equation (1) by default, any loss of :mod:`bpjax.losses` by name.

    L(X × Y; θ) = 1/(2N) Σ_i Σ_k (φ_θ(x_i)_k − y_{i,k})²                         (1)

    ∂L/∂φ^L_k(x_i) = (1/N) (φ^L_k(x_i) − y_{i,k})

The second line is where backpropagation starts (:func:`bpjax.backward.loss_deltas`, from
each loss's hand-written ``∂ℓ_i/∂φ^L``, :data:`bpjax.losses.SQUARED`'s for (1)): the paper's
``∂L/∂w = 1/N Σ_i Σ_k ∂φ_θ[k]/∂w (x_i) (φ_θ(x_i)_k − y_{i,k})``. Every loss of the registry
has the same shape, ``L = Σ_i s_i ℓ_i / Σ_i s_i`` with ``∂L/∂φ^L(x_i) = s_i/Σs · ∂ℓ_i/∂φ^L``:

| paper / loss                              | code                                        |
| ----------------------------------------- | ------------------------------------------- |
| ``ℓ_i``: (1) is ``½ ‖φ_θ(x_i) − y_i‖²``   | ``losses.sample_loss(loss, net, tr, Y)``    |
| ``1/N Σ_i ℓ_i`` (weighted: ``s_i / Σ s``) | ``losses.weighted_mean(ℓ, s)``              |
| ``∂ℓ_i/∂φ^L`` (or ``δ^L``, fused)         | ``losses.output_error``, see its table      |

With per-sample weights ``s_i ≥ 0`` the mean becomes a weighted mean: ``1/N`` is replaced
by ``s_i / Σ_i s_i``; all-ones weights give (1) exactly.
"""

from __future__ import annotations

import jax
import numpy as np

from bpjax.compilation import batched_jit
from bpjax.data import as_dtype, as_targets, as_weights, eager, is_labels
from bpjax.forward import prepare, propagate
from bpjax.losses import (
    SQUARED,
    Loss,
    check_loss_network,
    check_targets,
    get_loss,
    sample_loss,
    weighted_mean,
)
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["loss"]


def loss_of_params(net: Network, params: Params, X, Y, s=None, loss: Loss = SQUARED
                   ) -> jax.Array:
    """The loss as a pure function of ``params`` for prepared ``X (N, D)``, ``Y (N, d)``."""
    tr = propagate(net, structural(net, params), X)
    return weighted_mean(sample_loss(loss, net, tr, Y), s)


def resolve_loss(net: Network, loss) -> Loss:
    """``loss`` (a name or a :class:`~bpjax.Loss`) as a :class:`~bpjax.Loss` that can serve
    ``net``; a ``TypeError`` or ``ValueError`` otherwise, before any work."""
    loss = get_loss(loss)
    check_loss_network(loss, net)
    return loss


def prepare_supervised(net: Network, params, X, Y, weights=None, loss: Loss = SQUARED):
    """Checks and promotes ``(params, X, Y, weights)``, with ``X (N, D)`` and ``Y (N, d)``.

    Integer class labels become one-hot targets; concrete targets are checked against what
    ``loss`` needs (:func:`bpjax.losses.check_targets`).
    """
    params, X2, single = prepare(net, params, X)
    Y2 = as_targets(net, Y, X2.shape[0], single)
    check_targets(loss, Y2)
    s = as_weights(weights, X2.shape[0])
    return params, X2, as_dtype(Y2, X2.dtype), s


def supervised(fn):
    """``fn(net, params, X (N, D), Y (N, d), s, loss)`` as the jitted core of an eager function:
    ``core(net, params, X, Y, weights, loss)`` takes the arrays as given and checks and promotes
    them with :func:`prepare_supervised` when traced (``net`` and the :class:`~bpjax.Loss`
    ``loss`` static). Call it with :func:`call_supervised`."""
    def core(net, params, X, Y, weights, loss):
        return fn(net, *prepare_supervised(net, params, X, Y, weights, loss), loss)

    return batched_jit(core, static_argnums=(0, 5))


def call_supervised(core, net: Network, params, X, Y, weights=None, loss: Loss = SQUARED):
    """``core(net, params, X, Y, weights, loss)`` (a :func:`supervised` core), checked as in
    :func:`bpjax.data.eager`; ``loss`` already resolved (:func:`resolve_loss`).

    What a trace cannot check is checked first, eagerly, on the host: per-sample weights (finite,
    ``≥ 0``, not all 0), targets of a loss that restricts them (``loss.targets``), integer class
    labels (in ``0..d-1``). Squared loss without weights, the common case, syncs nothing.
    """
    if (weights is not None or loss.targets != "any"
            or is_labels(Y, net.outputs, np.ndim(Y) == 0)):
        prepare_supervised(net, params, X, Y, weights, loss)
    return eager(core, prepare_supervised, net, params, X, Y, weights, static=(loss,))


_loss_core = supervised(loss_of_params)


def loss(net: Network, params: Params, X, Y, weights=None, *, loss="squared") -> jax.Array:
    """The loss ``L(X × Y; θ)``: equation (1) unless ``loss`` names another.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``; integer
        class labels ``(N,)`` (one ``int`` for one ``x``) when ``d > 1``, one-hot encoded.
      weights: optional per-sample weights ``s`` of shape ``(N,)``; the loss becomes
        ``Σ_i s_i ℓ_i / Σ_i s_i`` (for (1): ``1/(2 Σ s) Σ_i s_i ‖φ_θ(x_i) − y_i‖²``).
      loss: ``"squared"`` (equation (1)), ``"binary_cross_entropy"``,
        ``"softmax_cross_entropy"``, a registered name, or a :class:`bpjax.Loss`; see
        :mod:`bpjax.losses`.

    Returns:
      ``L(X × Y; θ)``, a scalar.

    Raises:
      TypeError, ValueError: a bad input, before any work: shapes, an unknown loss, a loss
        the network cannot serve (binary cross-entropy on identity outputs, softmax on one
        output), concrete targets the loss cannot take, class labels out of range.

    Values are not checked (no host sync): NaN or Inf in the inputs gives NaN or Inf; see
    :mod:`bpjax.data` for how to check them. Targets of the cross-entropies are checked
    when concrete.
    """
    check_network(net, "loss")
    return call_supervised(_loss_core, net, params, X, Y, weights, resolve_loss(net, loss))
