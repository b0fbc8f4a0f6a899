"""Clamping: weights that training must not change (the note of §1.3.1).

The paper observes that its quadratic-regression network is over-specified, and that one can
"fix and not update (clamp)" some weights, e.g. ``w^1_02``, ``w^2_11`` and ``w^2_21``. In bpjax a
clamp is a boolean mask shaped like ``params``: ``frozen[l-1][j, k] == True`` keeps ``w^l_jk``
bit for bit during :func:`bpjax.fit`, whatever the optimizer.

Weights are named here by the paper's triples ``(l, j, k)``, **in the paper's numbering**:

| index | range          | meaning                                   | array index           |
| ----- | -------------- | ----------------------------------------- | --------------------- |
| ``l`` | ``1..L``       | the layer                                 | ``params[l-1]``       |
| ``j`` | ``0..fan_in``  | the input; ``0`` is the bias ``w^l_0k``   | row ``j``             |
| ``k`` | ``1..N_l``     | the neuron, counted from 1 as in the paper | column ``k - 1``      |

So the paper's ``w^1_02`` (the bias of neuron 2 of layer 1) is ``(1, 0, 2)``, which is
``params[0][0, 1]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.network import Network, check_network, is_int
from bpjax.params import Params, check_layers, check_params

__all__ = ["clamp", "frozen_mask"]


def _index(net: Network, triple) -> tuple[int, int, int]:
    """``(l, j, k)`` in paper numbering → ``(l, j, k - 1)``, checked; names the weight."""
    if not (isinstance(triple, (tuple, list)) and len(triple) == 3 and all(
            is_int(v) for v in triple)):
        raise TypeError(f"a weight is named by a triple of ints (l, j, k), got {triple!r}")
    l, j, k = (int(v) for v in triple)
    name = f"w^{l}_({j},{k})"
    if not 1 <= l <= net.depth:
        raise ValueError(f"{name}: layer l must be in 1..L = 1..{net.depth}, got l = {l}")
    rows, cols = net.shapes[l - 1]
    if not 0 <= j < rows:
        raise ValueError(
            f"{name}: input j must be in 0..{rows - 1} (0 is the bias) for layer {l}, got j = {j}")
    if not 1 <= k <= cols:
        raise ValueError(
            f"{name}: neuron k must be in 1..N_{l} = 1..{cols} (the paper counts neurons from "
            f"1), got k = {k}")
    if not net.structure(l)[j, k - 1]:
        why = "layer has bias=False" if j == 0 else "adjacency leaves it out"
        raise ValueError(f"{name} does not exist (a structural zero: the {why}); it never "
                         f"changes, so there is nothing to clamp")
    return l, j, k - 1


def frozen_mask(net: Network, weights: Iterable = ()) -> Params:
    """Boolean masks for :func:`bpjax.fit`'s ``frozen``: ``True`` at the given weights.

    Args:
      net: the network.
      weights: triples ``(l, j, k)`` in the paper's numbering (``j = 0`` the bias, ``k`` from 1).

    Returns:
      A tuple of ``L`` boolean arrays, the ``l-1``-th of shape ``(1 + fan_in, N_l)``.

    Example:
      The three clamps the paper suggests for figure 2 (§1.3.1):

      >>> import bpjax as bp
      >>> net = bp.Network(2, [bp.Layer(2, ("identity", "square")),
      ...                      bp.Layer(1, "identity", bias=False)])
      >>> frozen = bp.frozen_mask(net, [(1, 0, 2), (2, 1, 1), (2, 2, 1)])
      >>> bool(frozen[0][0, 1]), bool(frozen[1][1, 0]), int(sum(m.sum() for m in frozen))
      (True, True, 3)
    """
    check_network(net, "frozen_mask")
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise TypeError(f"weights must be a list of triples (l, j, k), got "
                        f"{type(weights).__name__}")
    if isinstance(weights, Mapping):  # its values would be dropped: {w: False} would clamp w
        raise TypeError("weights must be a list of triples (l, j, k), got a mapping: to set "
                        "values and clamp, use bp.clamp(net, params, {(l, j, k): value})")
    if isinstance(weights, tuple) and len(weights) == 3 and all(
            is_int(v) for v in weights):
        raise TypeError(f"weights must be a list of triples, e.g. [{weights!r}], got one triple")
    masks = [np.zeros(shape, dtype=bool) for shape in net.shapes]
    for triple in weights:
        l, j, k = _index(net, triple)
        masks[l - 1][j, k] = True
    return tuple(jnp.asarray(m) for m in masks)


def clamp(net: Network, params: Params, values: Mapping) -> tuple[Params, Params]:
    """Sets clamped weights to given values and returns them with their mask.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      values: ``{(l, j, k): value}`` in the paper's numbering (``j = 0`` the bias, ``k``
        from 1); each value a real number, finite in the dtype of ``params`` (``1e40`` is
        refused for float32 weights rather than stored as ``inf``).

    Returns:
      ``(params, frozen)``: the weights with ``w^l_jk = value`` set, and the masks that keep
      them there during :func:`bpjax.fit`.
    """
    check_network(net, "clamp")
    if not isinstance(values, Mapping):
        raise TypeError(
            f"values must be a mapping {{(l, j, k): value}}, got {type(values).__name__}")
    params = check_params(net, params)
    frozen = frozen_mask(net, list(values))
    params = list(params)
    for triple, value in values.items():
        l, j, k = _index(net, triple)
        name, dtype = f"w^{l}_({j},{k + 1})", params[l - 1].dtype
        if not isinstance(value, jax.core.Tracer):
            if isinstance(value, (bool, np.bool_)) or not (
                    isinstance(value, (int, float, np.integer, np.floating)) or (
                        isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0
                        and np.issubdtype(value.dtype, np.number)
                        and not np.issubdtype(value.dtype, np.complexfloating))):
                raise TypeError(f"{name} must be set to a real number, got "
                                f"{type(value).__name__}: {value!r:.40}")
            v = float(value)
            if not np.isfinite(v):
                raise ValueError(f"{name} must be set to a finite number, got {value!r}")
            largest = float(jnp.finfo(dtype).max)
            if abs(v) > largest:
                raise ValueError(f"{name} = {v!r} overflows {jnp.dtype(dtype).name} (largest "
                                 f"finite {largest:.5g}), the dtype of params[{l - 1}]")
        params[l - 1] = jnp.asarray(params[l - 1]).at[j, k].set(jnp.asarray(value, dtype))
    return tuple(params), frozen


def check_frozen(net: Network, frozen) -> Params | None:
    """``frozen`` must be ``None`` or a tuple of boolean arrays shaped like ``params``."""
    if frozen is None:
        return None
    return check_layers(
        net, frozen, name="frozen", boolean=True, expected="the shape of params[{i}],",
        what="boolean arrays shaped like params (see bpjax.frozen_mask)")


def apply_update(w: jax.Array, step: jax.Array, mask) -> jax.Array:
    """``w + step`` where ``mask`` is True (a trainable weight), ``w`` bit for bit elsewhere.

    The one place where a clamp takes effect: every trainer applies its final update through
    it, after the optimizer, so nothing can move a clamped weight. ``mask=None``: all trainable.
    """
    new = w + step
    return new if mask is None else jnp.where(mask, new, w)
