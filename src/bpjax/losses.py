"""Losses ``L(X × Y; θ)``, each with its hand-written derivative beside it.

Every loss is a weighted mean of per-sample terms ``ℓ_i = ℓ(φ^L(x_i), y_i)``,

    L = Σ_i s_i ℓ_i / Σ_i s_i           (s_i = 1: the mean, 1/N Σ_i ℓ_i),

so its gradient is ``∂L/∂φ^L(x_i) = s_i/Σs · ∂ℓ_i/∂φ^L``: backpropagation starts from
``∂ℓ_i/∂φ^L``, written by hand next to ``ℓ`` (the paper's ``φ_θ(x_i)_k − y_ik`` for the squared
loss). A loss may also give ``δ^L = ∂ℓ_i/∂a^L`` directly from the output layer's
pre-activations, for one output activation: the *fused* form, which the backward pass then
starts from instead of multiplying ``∂ℓ_i/∂φ^L`` by ``∂φ^L/∂a^L`` (equation (2)).

| loss                      | ``ℓ_i(φ, y)``, summed over ``k``        | ``∂ℓ_i/∂φ^L``              |
| ------------------------- | --------------------------------------- | -------------------------- |
| ``squared``, (1)          | ``½ (φ_k − y_k)²``                      | ``φ − y``                  |
| ``binary_cross_entropy``  | ``−y_k log φ_k − (1−y_k) log(1−φ_k)``   | ``(φ − y) / (φ (1 − φ))``  |
|   fused, logistic outputs | ``softplus(a_k) − y_k a_k``             | ``δ^L = σ(a) − y``         |
| ``softmax_cross_entropy`` | ``−y_k log softmax(φ)_k``               | ``softmax(φ) Σ_k y_k − y`` |

In code: ``Loss.ell`` and ``Loss.dell`` (``φ``-form), ``Loss.fused`` (``a``-form, with the
activation it is for), and ``Loss.notation`` (this table's formulas as plain text in the
paper's notation, a :class:`Notation`, for :func:`bpjax.explain`), side by side below:
``_squared``/``_squared_d``, ``_bce``/``_bce_d`` with the fused
``_bce_logistic``/``_bce_logistic_delta``, ``_softmax_ce``/``_softmax_ce_d``.
:func:`output_error` picks the form for a network (it is where every backward pass of bpjax
starts: :mod:`bpjax.backward`, :mod:`bpjax.algorithm1`, :mod:`bpjax.minibatch`,
:mod:`bpjax.ghost_norms`) and :func:`sample_loss` the matching ``ℓ_i``.

Binary cross-entropy with logistic output neurons is computed from ``a^L`` only (softplus,
never ``log σ(a)``), so a saturated unit gives neither ``log 0`` nor a vanishing gradient:
``δ^L = σ(a) − y`` stays ``±1`` where ``∂φ/∂a`` underflows to 0. The softmax cross-entropy uses
``log softmax(φ) = φ − logsumexp(φ)``; its ``φ^L`` are the logits (identity output neurons,
typically), and soft labels are allowed.

**Targets.** Each loss says what ``Y`` must hold (``Loss.targets``), checked when ``Y`` is
concrete (a traced ``Y`` passes unchecked): ``"any"`` real numbers; ``"probabilities"`` every
``y_ik ∈ [0, 1]``; ``"distribution"`` rows ``y_i ≥ 0`` summing to 1 (and ``d ≥ 2``). Integer
class labels of shape ``(N,)`` are one-hot encoded for any loss when ``d > 1`` (see
:func:`bpjax.data.as_targets`). ``Loss.outputs == "unit_interval"`` (binary cross-entropy)
refuses an output layer with a built-in activation that cannot produce values in ``(0, 1)``.

**Identity.** A :class:`Loss` is a NamedTuple of its name and functions; compiled code is
keyed on the whole object (it is a static argument of ``jax.jit``), so registering a name again
with ``overwrite=True`` gives a different object and new compiled code, never stale numbers.
Build a user's :class:`Loss` once (or register it) and reuse it: a new object with new
functions compiles again.

No automatic differentiation is used here: :func:`bpjax.check_loss` checks each derivative
against ``jax.grad`` of its function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import activations
from bpjax.activations import Activation

__all__ = [
    "BINARY_CROSS_ENTROPY",
    "Fused",
    "Loss",
    "Notation",
    "SOFTMAX_CROSS_ENTROPY",
    "SQUARED",
    "TARGETS",
    "available_losses",
    "check_loss_network",
    "check_targets",
    "fuses",
    "get_loss",
    "output_error",
    "register_loss",
    "sample_loss",
    "sample_scale",
    "weighted_mean",
]

TARGETS = ("any", "probabilities", "distribution")
OUTPUTS = ("any", "unit_interval")


class Fused(NamedTuple):
    """A loss's form on the output pre-activations ``a^L``, for one output activation.

    Attributes:
      activation: the :class:`~bpjax.Activation` every output neuron must have for this form
        to be used (compared as an object: a re-registered name is another activation).
      ell: ``(a^L, y) -> ℓ_i``, the same value as ``Loss.ell(φ(a^L), y)``.
      delta: ``(a^L, y) -> δ^L = ∂ℓ_i/∂a^L``, written by hand.
    """

    activation: Activation
    ell: Callable[[jax.Array, jax.Array], jax.Array]
    delta: Callable[[jax.Array, jax.Array], jax.Array]


class Notation(NamedTuple):
    """A loss written in the paper's notation, as plain text (what :func:`bpjax.explain` and
    its tables print); the numbers always come from the functions, never from this text.

    ``dell`` and ``delta`` are ``str.format`` templates of one output ``k``: ``{phi}`` stands
    for ``φ^L_k``, ``{a}`` for ``a^L_k``, ``{y}`` for ``y_k`` (symbols, or one sample's numbers),
    ``{L}`` and ``{k}`` for the indices. The defaults, for a loss that gives no text, are the
    derivatives' bare symbols.

    Attributes:
      ell: ``ℓ(φ^L, y)`` of one sample, summed over the outputs: ``"½ Σ_k (φ^L_k − y_k)²"``.
      dell: ``∂ℓ/∂φ^L_k``: ``"{phi} − {y}"``.
      delta: the fused form's ``δ^L_k = ∂ℓ/∂a^L_k`` (used with ``Loss.fused``):
        ``"σ({a}) − {y}"``.
    """

    ell: str = "ℓ(φ^L, y)"
    dell: str = "∂ℓ/∂φ^{L}_{k}"
    delta: str = "∂ℓ/∂a^{L}_{k}"

    def output(self, template: str, k, phi="φ^{L}_{k}", a="a^{L}_{k}", y="y_{k}",
               L="L") -> str:
        """``template`` (``dell`` or ``delta``) for output ``k``: with the default ``phi``,
        ``a`` and ``y`` in symbols (``"φ^2_1 − y_1"``), or with the numbers given."""
        symbols = {"phi": phi, "a": a, "y": y}
        return template.format(L=L, k=k, **{name: v.format(L=L, k=k)
                                            for name, v in symbols.items()})


class Loss(NamedTuple):
    """A per-sample loss ``ℓ(φ^L, y)`` and its derivative ``∂ℓ/∂φ^L``, both by hand.

    The functions take ``phi`` and ``y`` of shape ``(..., d)``: one sample ``(d,)`` or a batch
    ``(N, d)``. ``ell`` sums over the outputs ``k`` and returns shape ``(...)``; ``dell`` returns
    the shape of ``phi``. The loss of a data set is their weighted mean (module docstring).

    Attributes:
      name: the name used in ``loss=`` and in messages.
      ell: ``(phi, y) -> ℓ``, shape ``(...)``.
      dell: ``(phi, y) -> ∂ℓ/∂φ``, shape ``(..., d)``. Check it with :func:`bpjax.check_loss`.
      targets: what ``y`` must hold: ``"any"``, ``"probabilities"`` (each entry in
        ``[0, 1]``) or ``"distribution"`` (rows ``≥ 0`` summing to 1, ``d ≥ 2``).
      fused: optional :class:`Fused` form on ``a^L``, used when every output neuron has its
        activation.
      outputs: ``"any"``, or ``"unit_interval"``: ``φ^L`` must be in ``(0, 1)``, so an output
        layer with a built-in activation that cannot produce that (identity, tanh, ...) is
        refused.
      proba: optional ``phi -> class probabilities`` (:func:`bpjax.predict_proba`).
      notation: the loss written in the paper's notation (:class:`Notation`), for
        :func:`bpjax.explain`; the default writes ``ℓ``, ``∂ℓ/∂φ^L_k`` and ``∂ℓ/∂a^L_k`` as
        bare symbols (their values are still shown).
    """

    name: str
    ell: Callable[[jax.Array, jax.Array], jax.Array]
    dell: Callable[[jax.Array, jax.Array], jax.Array]
    targets: str = "any"
    fused: Fused | None = None
    outputs: str = "any"
    proba: Callable[[jax.Array], jax.Array] | None = None
    notation: Notation = Notation()


# --- the built-in losses: ℓ and ∂ℓ/∂φ^L side by side --------------------------------------


def _squared(phi, y):
    r = phi - y
    return 0.5 * jnp.sum(r * r, axis=-1)


def _squared_d(phi, y):
    return phi - y


def _bce(phi, y):
    # xlogy: 0 · log 0 = 0, so a target of exactly 0 or 1 costs nothing where φ reaches it
    return -jnp.sum(jax.scipy.special.xlogy(y, phi)
                    + jax.scipy.special.xlog1py(1 - y, -phi), axis=-1)


def _bce_d(phi, y):
    return (phi - y) / (phi * (1 - phi))


def _bce_logistic(a, y):
    # −[y log σ(a) + (1 − y) log(1 − σ(a))] = softplus(a) − y a: finite for every finite a
    return jnp.sum(jnp.logaddexp(a, 0) - y * a, axis=-1)


def _bce_logistic_delta(a, y):
    return jax.nn.sigmoid(a) - y  # ∂/∂a [softplus(a) − y a]; ±1 for saturated a, never 0


def _bce_proba(phi):
    return phi


def _softmax_ce(phi, y):
    # −Σ_k y_k (φ_k − logsumexp(φ)), for any y (soft labels, rows not summing to 1)
    lse = jax.scipy.special.logsumexp(phi, axis=-1)
    return lse * jnp.sum(y, axis=-1) - jnp.sum(y * phi, axis=-1)


def _softmax_ce_d(phi, y):
    return jax.nn.softmax(phi, axis=-1) * jnp.sum(y, axis=-1, keepdims=True) - y


def _softmax(phi):
    return jax.nn.softmax(phi, axis=-1)


SQUARED = Loss("squared", _squared, _squared_d,
                notation=Notation("½ Σ_k (φ^L_k − y_k)²", "{phi} − {y}"))
BINARY_CROSS_ENTROPY = Loss(
    "binary_cross_entropy", _bce, _bce_d, targets="probabilities",
    fused=Fused(activations.get_activation("logistic"), _bce_logistic, _bce_logistic_delta),
    outputs="unit_interval", proba=_bce_proba,
    notation=Notation("−Σ_k [y_k log φ^L_k + (1 − y_k) log(1 − φ^L_k)]",
                      "({phi} − {y}) / ({phi}·(1 − {phi}))", "σ({a}) − {y}"))
# Σ_r y_r = 1 for the targets this loss takes (checked), so ∂ℓ/∂φ^L_k = softmax(φ^L)_k − y_k.
SOFTMAX_CROSS_ENTROPY = Loss("softmax_cross_entropy", _softmax_ce, _softmax_ce_d,
                             targets="distribution", proba=_softmax,
                             notation=Notation("−Σ_k y_k log softmax(φ^L)_k",
                                               "softmax(φ^{L})_{k} − {y}"))

_REGISTRY: dict[str, Loss] = {f.name: f for f in (SQUARED, BINARY_CROSS_ENTROPY,
                                                  SOFTMAX_CROSS_ENTROPY)}

# Built-in activations whose outputs are not confined to (0, 1): refused by "unit_interval".
_NOT_UNIT_INTERVAL = tuple(activations.get_activation(name) for name in
                           ("identity", "square", "tanh", "relu", "softplus"))


def _checked(loss: Loss) -> Loss:
    """``loss`` if its fields are what a :class:`Loss` holds, else a TypeError or ValueError."""
    if not isinstance(loss.name, str) or not loss.name:
        raise TypeError(f"a Loss needs a non-empty str name, got {loss.name!r}")
    if not callable(loss.ell) or not callable(loss.dell):
        raise TypeError(f"Loss {loss.name!r} needs callables ell and dell, got "
                        f"{type(loss.ell).__name__} and {type(loss.dell).__name__}")
    if loss.targets not in TARGETS:
        raise ValueError(f"Loss {loss.name!r}: targets must be one of {TARGETS}, got "
                         f"{loss.targets!r}")
    if loss.outputs not in OUTPUTS:
        raise ValueError(f"Loss {loss.name!r}: outputs must be one of {OUTPUTS}, got "
                         f"{loss.outputs!r}")
    if loss.fused is not None and not (
            isinstance(loss.fused, Fused) and isinstance(loss.fused.activation, Activation)
            and callable(loss.fused.ell) and callable(loss.fused.delta)):
        raise TypeError(f"Loss {loss.name!r}: fused must be a bpjax.losses.Fused(activation, "
                        f"ell, delta) with a bpjax.Activation and two callables, got "
                        f"{loss.fused!r:.80}")
    if loss.proba is not None and not callable(loss.proba):
        raise TypeError(f"Loss {loss.name!r}: proba must be callable or None")
    _check_notation(loss)
    try:
        hash(loss)
    except TypeError as e:  # it is a static argument of jax.jit
        raise TypeError(f"Loss {loss.name!r} must be hashable (its functions are part of "
                        f"what compiled code is keyed on): {e}") from None
    return loss


def _check_notation(loss: Loss) -> None:
    """A TypeError or ValueError unless ``loss.notation`` is a :class:`Notation` of strings
    whose templates use only ``{phi}``, ``{a}``, ``{y}``, ``{L}`` and ``{k}``."""
    n = loss.notation
    if not isinstance(n, Notation) or not all(isinstance(t, str) for t in n):
        raise TypeError(f"Loss {loss.name!r}: notation must be a bpjax.losses.Notation(ell, "
                        f"dell, delta) of str, got {n!r:.80}")
    for field in ("dell", "delta"):
        try:
            n.output(getattr(n, field), 1)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"Loss {loss.name!r}: notation.{field} = {getattr(n, field)!r} is not a template "
                f"of {{phi}}, {{a}}, {{y}}, {{L}} and {{k}} (write braces as {{{{ }}}}): "
                f"{type(e).__name__}: {e}") from None


def register_loss(
    name: str,
    ell: Callable[[jax.Array, jax.Array], jax.Array],
    dell: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    targets: str = "any",
    fused: Fused | None = None,
    outputs: str = "any",
    proba: Callable[[jax.Array], jax.Array] | None = None,
    notation: Notation | None = None,
    overwrite: bool = False,
) -> Loss:
    """Registers a user loss so that ``loss=name`` finds it.

    Args:
      name: the new name.
      ell: ``(phi, y) -> ℓ``, per sample: ``phi`` and ``y`` of shape ``(..., d)``, summed over
        the last axis to shape ``(...)``.
      dell: ``(phi, y) -> ∂ℓ/∂φ``, shape ``(..., d)``, written by hand. Check it with
        :func:`bpjax.check_loss` (:func:`bpjax.check_gradients` does too).
      targets, fused, outputs, proba, notation: see :class:`Loss`; ``notation`` (None: the
        bare symbols) is the loss written for :func:`bpjax.explain`, e.g.
        ``Notation("Σ_k huber(φ^L_k − y_k)", "clip({phi} − {y}, −c, c)")``.
      overwrite: allow replacing an existing name. Compiled code is keyed on the
        :class:`Loss` object, not its name, so code that ran with the old loss is never reused
        for the new one.

    Returns:
      The registered :class:`Loss`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"loss name must be a non-empty str, got {name!r}")
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"loss {name!r} is already registered; pass overwrite=True")
    notation = Notation() if notation is None else notation
    loss = _checked(Loss(name, ell, dell, targets, fused, outputs, proba, notation))
    _REGISTRY[name] = loss
    return loss


def available_losses() -> tuple[str, ...]:
    """The names that ``loss=`` accepts."""
    return tuple(sorted(_REGISTRY))


def get_loss(loss: str | Loss) -> Loss:
    """Looks up a loss by name, or checks and returns a :class:`Loss`.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
      TypeError: neither a str nor a :class:`Loss`.
    """
    if isinstance(loss, Loss):  # a registered one was checked when it was registered
        return loss if _REGISTRY.get(loss.name) is loss else _checked(loss)
    if isinstance(loss, str):
        if loss in _REGISTRY:
            return _REGISTRY[loss]
        raise ValueError(f"unknown loss {loss!r}; known losses: {', '.join(available_losses())} "
                         f"(or register one with bpjax.register_loss)")
    raise TypeError(f"loss must be a name (str) or a bpjax.Loss, got {type(loss).__name__}: "
                    f"{loss!r:.60}")


# --- what a loss asks of the network and the targets -----------------------------------------


def check_loss_network(loss: Loss, net) -> None:
    """Refuses a network that ``loss`` cannot serve, before any work.

    ``"distribution"`` targets need ``d ≥ 2`` outputs (a softmax over one output is constant);
    ``outputs == "unit_interval"`` refuses output neurons with a built-in activation whose
    values are not confined to ``(0, 1)`` (a user's activation is not judged).
    """
    d = net.outputs
    if loss.targets == "distribution" and d < 2:
        raise ValueError(
            f"loss {loss.name!r} needs d >= 2 outputs (one per class: a softmax over one output "
            f"is always 1), got a network with d = {d}; for two classes use d = 2, or "
            f"binary_cross_entropy with one logistic output")
    if loss.outputs == "unit_interval":
        bad = [a.name for a in dict.fromkeys(net.layers[-1].activations)
               if a in _NOT_UNIT_INTERVAL]
        if bad:
            raise ValueError(
                f"loss {loss.name!r} needs outputs in (0, 1), but the output layer has "
                f"{', '.join(map(repr, bad))} neurons, which can produce values outside it: use "
                f"Layer({d}, 'logistic') as the output layer (or softmax_cross_entropy on "
                f"identity outputs)")


def check_targets(loss: Loss, Y, name: str = "Y") -> None:
    """Checks the values of targets ``Y (N, d)`` against ``loss.targets`` when concrete.

    Raises:
      ValueError: naming ``name``, the first bad entry or row, and what was expected.
    """
    if loss.targets == "any" or isinstance(Y, jax.core.Tracer):
        return
    if isinstance(Y, jax.Array) and not Y.is_fully_addressable:  # spans several hosts
        return
    v = np.asarray(Y)
    if loss.targets == "probabilities":
        bad = ~((v >= 0) & (v <= 1))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"loss {loss.name!r} needs targets in [0, 1] (probabilities, e.g. 0/1 labels), "
                f"but {name} has {int(bad.sum())} entries outside it, first {name}{list(first)} "
                f"= {v[first]}")
        return
    negative = ~(v >= 0)
    if negative.any():
        first = tuple(int(i) for i in np.argwhere(negative)[0])
        raise ValueError(
            f"loss {loss.name!r} needs targets that are distributions over the classes "
            f"(rows >= 0 summing to 1, or integer class labels of shape (N,)), but {name} has "
            f"{int(negative.sum())} negative or NaN entries, first {name}{list(first)} = "
            f"{v[first]}")
    # rounding of rows normalised in float32 (or in float64 from float32 data) passes
    tol = max(float(np.sqrt(np.finfo(v.dtype if v.dtype.kind == "f" else np.float64).eps)), 1e-6)
    sums = v.sum(axis=-1)
    off = np.abs(sums - 1) > tol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"loss {loss.name!r} needs each row of {name} to sum to 1 (a distribution over the "
            f"classes, or integer class labels of shape (N,)), but {int(off.sum())} rows do not, "
            f"first row {i} sums to {sums[i]:.6g}")


# --- the per-sample terms, and the weighted mean ----------------------------------------------


def fuses(loss: Loss, net) -> bool:
    """Whether backpropagation starts from ``loss.fused.delta``: every output neuron of ``net``
    has the fused form's activation."""
    return loss.fused is not None and all(
        a == loss.fused.activation for a in net.layers[-1].activations)


def sample_loss(loss: Loss, net, tr, Y) -> jax.Array:
    """``ℓ_i`` of every sample, shape ``(N,)`` (``()`` for one sample), from a forward trace."""
    if fuses(loss, net):
        return loss.fused.ell(tr.a[-1], Y)
    return loss.ell(tr.phi[-1], Y)


def output_error(loss: Loss, net, tr, Y) -> tuple[jax.Array, bool]:
    """Each sample's output error, without the ``1/N``, and where it is taken.

    Returns:
      ``(e, fused)``: ``e = ∂ℓ_i/∂a^L = δ^L`` (the fused form, :func:`fuses`) if ``fused``,
      else ``e = ∂ℓ_i/∂φ^L``; shape ``(N, d)`` (``(d,)`` for one sample). ``fused`` is a Python
      bool, decided by the network: pass it to :func:`bpjax.backward.delta_rule` as
      ``output_delta``.
    """
    if fuses(loss, net):
        return loss.fused.delta(tr.a[-1], Y), True
    return loss.dell(tr.phi[-1], Y), False


def sample_scale(N: int, dtype, s=None) -> jax.Array:
    """Each sample's weight in the mean: ``1/N``, or ``s_i / Σ s``; shape ``(N,)``."""
    if s is None:
        return jnp.full((N,), 1 / N, dtype)
    s = jnp.asarray(s, dtype)
    return s / s.sum()


def weighted_mean(ell: jax.Array, s=None) -> jax.Array:
    """``L = Σ_i s_i ℓ_i / Σ_i s_i`` (the mean when ``s`` is None), a scalar."""
    return jnp.sum(sample_scale(ell.shape[0], ell.dtype, s) * ell)
