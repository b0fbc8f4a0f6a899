"""Classification: class probabilities, predicted classes and accuracy from ``φ_θ(x)``.

A classifier is a network trained with a classification loss (:mod:`bpjax.losses`); the loss
says how its outputs ``φ^L`` are read:

| loss                      | ``predict_proba``, ``(N, d)`` | ``predict``                          |
| ------------------------- | ----------------------------- | ------------------------------------ |
| ``softmax_cross_entropy`` | ``softmax(φ^L)``              | ``argmax_k φ^L_k``, ``(N,)`` ints    |
| ``binary_cross_entropy``  | ``φ^L``                       | ``φ^L > ½``: ``(N,)`` ints 0/1 if    |
|                           |                               | ``d = 1``, ``(N, d)`` if ``d > 1``   |

:func:`accuracy` compares :func:`predict` with targets given as integer class labels, one-hot
(or soft) rows, or 0/1 labels: the fraction of samples whose prediction is right (for
multi-label outputs, whose every label is right).

These functions run the forward pass only (:func:`bpjax.forward`); the loss is a
classification loss (one with ``Loss.proba``), a name or a :class:`bpjax.Loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bpjax.forward import prepare, propagate
from bpjax.loss import prepare_supervised, resolve_loss
from bpjax.losses import Loss, weighted_mean
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["accuracy", "predict", "predict_proba"]


def _classifier(net: Network, loss, who: str) -> Loss:
    """``loss`` resolved, and a classification loss (one that defines probabilities)."""
    loss = resolve_loss(net, loss)
    if loss.proba is None:
        raise ValueError(
            f"{who} needs a classification loss (softmax_cross_entropy, binary_cross_entropy, "
            f"or a registered loss with proba=), got loss {loss.name!r}, whose outputs are not "
            f"class probabilities; use bp.forward for its outputs")
    return loss


def _classes(loss: Loss, p: jax.Array) -> jax.Array:
    """Predicted classes from probabilities ``p`` ``(..., d)``."""
    if loss.targets == "distribution":
        return jnp.argmax(p, axis=-1)
    c = (p > 0.5).astype(jnp.int32)
    return c[..., 0] if p.shape[-1] == 1 else c


@jax.jit(static_argnums=(0, 3))
def _proba_jit(net, params, X, loss):
    return loss.proba(propagate(net, structural(net, params), X).phi[-1])


@jax.jit(static_argnums=(0, 3))
def _predict_jit(net, params, X, loss):
    return _classes(loss, _proba_jit(net, params, X, loss))


@jax.jit(static_argnums=(0, 5))
def _accuracy_jit(net, params, X, Y, s, loss):
    right = _predict_jit(net, params, X, loss) == _classes(loss, Y)
    if right.ndim > 1:  # multi-label: a sample is right when every label is
        right = right.all(axis=-1)
    return weighted_mean(right.astype(X.dtype), s)


def predict_proba(net: Network, params: Params, X, *, loss) -> jax.Array:
    """Class probabilities: ``softmax(φ^L)`` (softmax cross-entropy) or ``φ^L`` (binary).

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      loss: the classification loss the network is trained with (a name or a
        :class:`bpjax.Loss` with ``proba``).

    Returns:
      ``(N, d)`` (``(d,)`` for one ``x``): for softmax rows summing to 1; for binary
      cross-entropy each output's probability of class 1.
    """
    check_network(net, "predict_proba")
    loss = _classifier(net, loss, "predict_proba")
    params, X2, single = prepare(net, params, X)
    p = _proba_jit(net, params, X2, loss)
    return p[0] if single else p


def predict(net: Network, params: Params, X, *, loss) -> jax.Array:
    """Predicted classes: the most probable class, or each binary output above ½.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      loss: the classification loss the network is trained with.

    Returns:
      Integer classes: ``(N,)`` in ``0..d-1`` for softmax cross-entropy; ``(N,)`` of 0/1 for
      binary cross-entropy with ``d = 1``, ``(N, d)`` of 0/1 with ``d > 1`` (multi-label). One
      ``x`` drops the leading axis.
    """
    check_network(net, "predict")
    loss = _classifier(net, loss, "predict")
    params, X2, single = prepare(net, params, X)
    c = _predict_jit(net, params, X2, loss)
    return c[0] if single else c


def accuracy(net: Network, params: Params, X, Y, weights=None, *, loss) -> jax.Array:
    """The fraction of samples classified right, ``Σ_i s_i [predict(x_i) = y_i] / Σ_i s_i``.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: the true classes, in any form the loss takes: integer class labels ``(N,)`` or one-hot
        (or soft: the most probable class counts) rows ``(N, d)`` for softmax; 0/1 labels
        ``(N,)`` or ``(N, d)`` for binary cross-entropy (probabilities are rounded at ½).
      weights: optional per-sample weights ``(N,)``.
      loss: the classification loss the network is trained with.

    Returns:
      A scalar in ``[0, 1]``. For multi-label outputs a sample counts as right when all its
      labels are (exact match).
    """
    check_network(net, "accuracy")
    loss = _classifier(net, loss, "accuracy")
    params, X2, Y2, s = prepare_supervised(net, params, X, Y, weights, loss)
    return _accuracy_jit(net, params, X2, Y2, s, loss)
