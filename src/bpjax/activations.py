"""Activation functions φ(a) with their hand-written derivatives ∂φ/∂a.

Each neuron (l, k) of the paper has its own activation function φ^l_k, and Algorithm 2
(lines 4-8) needs its derivative ∂φ^l_k/∂a^l_k "depending on l, k and the definition of
φ^l_k(z)". Here every activation is an :class:`Activation`: a name, the function and its
derivative, both functions of the pre-activation ``a`` and written side by side below.

| paper (Algorithm 2, lines 4-8)          | here                      |
| --------------------------------------- | ------------------------- |
| φ(z) = z, return 1                      | ``identity``              |
| φ(z) = z², return 2 a                   | ``square``                |
| φ(z) = 1/(1+e^{-z}), return φ(a)(1-φ(a)) | ``logistic`` (``sigmoid``) |
| also                                    | ``tanh``, ``relu``, ``softplus`` |

Kinks follow JAX's conventions: ``relu'(0) = 0``. ``logistic`` and ``softplus`` are
numerically stable: finite for any finite ``a`` in float32.

A layer mixes activations per neuron; :func:`phi` and :func:`dphi` apply such a mix to a
whole layer at once, with one vectorised select per *distinct* activation (never a Python
loop over neurons).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Activation",
    "available_activations",
    "dphi",
    "dphi_expression",
    "get_activation",
    "phi",
    "phi_expression",
    "register_activation",
]


class Activation(NamedTuple):
    """An activation function φ and its derivative ∂φ/∂a, both functions of ``a``.

    Attributes:
      name: the name used in ``Layer(size, activation=name)`` and in reprs.
      phi: ``a -> φ(a)``, elementwise, any shape.
      dphi: ``a -> ∂φ/∂a (a)``, elementwise, same shape as ``a``. Written by hand: the
        backward pass never differentiates ``phi`` automatically.
      init: the initialisation scale used by :func:`bpjax.init` for neurons with this
        activation: ``"glorot"`` (σ² = 2 / (fan_in + fan_out)) or ``"he"`` (σ² = 2 / fan_in).
    """

    name: str
    phi: Callable[[jax.Array], jax.Array]
    dphi: Callable[[jax.Array], jax.Array]
    init: str = "glorot"


# --- the built-in activations: φ and ∂φ/∂a side by side ---------------------------------

def _identity(a):
    return a


def _identity_d(a):
    return jnp.ones_like(a)


def _square(a):
    return a * a


def _square_d(a):
    return 2 * a


def _logistic(a):
    return jax.nn.sigmoid(a)  # lax.logistic: stable for large |a|


def _logistic_d(a):
    s = jax.nn.sigmoid(a)
    return s * (1 - s)


def _tanh(a):
    return jnp.tanh(a)


def _tanh_d(a):
    t = jnp.tanh(a)
    return 1 - t * t


def _relu(a):
    return jax.nn.relu(a)  # its custom JVP gives relu'(0) = 0, like _relu_d


def _relu_d(a):
    return (a > 0).astype(a.dtype)  # relu'(0) = 0, as jax.grad(jax.nn.relu)(0.)


def _softplus(a):
    return jnp.logaddexp(a, 0)  # log(1 + e^a) without overflow


def _softplus_d(a):
    return jax.nn.sigmoid(a)


_REGISTRY: dict[str, Activation] = {}
_ALIASES: dict[str, str] = {"sigmoid": "logistic", "linear": "identity"}


def register_activation(
    name: str,
    phi: Callable[[jax.Array], jax.Array],
    dphi: Callable[[jax.Array], jax.Array],
    *,
    init: str = "glorot",
    overwrite: bool = False,
) -> Activation:
    """Registers a user activation so that layers can name it.

    Args:
      name: the new name.
      phi: ``a -> φ(a)``, elementwise.
      dphi: ``a -> ∂φ/∂a``, elementwise, written by hand. Check it with
        :func:`bpjax.check_activation`.
      init: ``"glorot"`` or ``"he"``, see :class:`Activation`.
      overwrite: allow replacing an existing name, or an alias (``"sigmoid"``, ``"linear"``):
        the name then means the new activation (an alias stops being one; its old target
        keeps its own name). Networks built before keep the functions they were built with,
        and so does what was compiled for them: a :class:`bpjax.Layer` holds the functions
        its names resolved to when it was built, as part of its identity. Build the network
        again to use the new function.

    Returns:
      The registered :class:`Activation`.
    """
    act = _checked(Activation(name, phi, dphi, init))
    if not overwrite and (name in _REGISTRY or name in _ALIASES):
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True")
    _ALIASES.pop(name, None)  # overwriting an alias: the name is the new activation's now
    _REGISTRY[name] = act
    return act


for _act in (
    Activation("identity", _identity, _identity_d),
    Activation("square", _square, _square_d),
    Activation("logistic", _logistic, _logistic_d),
    Activation("tanh", _tanh, _tanh_d),
    Activation("relu", _relu, _relu_d, init="he"),
    Activation("softplus", _softplus, _softplus_d),
):
    _REGISTRY[_act.name] = _act


def _checked(act: Activation) -> Activation:
    """``act`` if its fields are what :class:`Activation` says: a name, two elementwise
    callables (traced once on an abstract ``(2, 3)`` array: shapes only, nothing computed) and
    a known ``init``; else a ``TypeError`` or ``ValueError`` naming the activation."""
    name = act.name
    if not isinstance(name, str) or not name:
        raise TypeError(f"activation name must be a non-empty str, got {name!r}")
    if not callable(act.phi) or not callable(act.dphi):
        raise TypeError(f"activation {name!r} needs callables phi and dphi, got "
                        f"{type(act.phi).__name__} and {type(act.dphi).__name__}")
    if act.init not in ("glorot", "he"):
        raise ValueError(f"activation {name!r}: init must be 'glorot' or 'he', got {act.init!r}")
    a = jax.ShapeDtypeStruct((2, 3), jnp.float32)
    for which, f in (("phi", act.phi), ("dphi", act.dphi)):
        try:
            out = jax.eval_shape(f, a)
        except Exception as e:  # the user's function, whatever it raises
            raise TypeError(f"activation {name!r}: {which} fails on an array of shape (2, 3) "
                            f"({type(e).__name__}: {str(e)[:200]}); it must be elementwise, "
                            f"written with jax.numpy") from e
        if getattr(out, "shape", None) != a.shape:
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"activation {name!r}: {which} must be elementwise (an array of "
                             f"shape (2, 3) in, the same shape out), got {got}")
    return act


def available_activations() -> tuple[str, ...]:
    """The names (and aliases) that ``Layer(activation=...)`` accepts."""
    return tuple(sorted([*_REGISTRY, *_ALIASES]))


def get_activation(activation: str | Activation) -> Activation:
    """Looks up an activation by name, or checks and returns an :class:`Activation`."""
    if isinstance(activation, Activation):  # a registered one was checked when registered
        return activation if _REGISTRY.get(activation.name) is activation else \
            _checked(activation)
    if isinstance(activation, str):
        key = _ALIASES.get(activation, activation)
        if key in _REGISTRY:
            return _REGISTRY[key]
        raise ValueError(
            f"unknown activation {activation!r}; known activations: "
            f"{', '.join(available_activations())} (or pass bpjax.Activation(name, phi, dphi))"
        )
    raise TypeError(
        f"an activation must be a name (str) or a bpjax.Activation, got "
        f"{type(activation).__name__}: {activation!r}"
    )


# --- a layer's per-neuron mix, vectorised --------------------------------------------------

def _groups(acts: Sequence[Activation]) -> list[tuple[Activation, np.ndarray | None]]:
    """Distinct activations of a layer, each with the boolean mask of its neurons."""
    distinct = list(dict.fromkeys(acts))
    if len(distinct) == 1:
        return [(distinct[0], None)]
    return [(f, np.array([g == f for g in acts])) for f in distinct]


def _apply(acts: Sequence[Activation], a: jax.Array, which: str) -> jax.Array:
    groups = _groups(acts)
    first, *rest = groups
    out = getattr(first[0], which)(a)
    for f, mask in rest:
        out = jnp.where(mask, getattr(f, which)(a), out)
    return out


def phi(acts: Sequence[Activation], a: jax.Array) -> jax.Array:
    """φ^l(a^l) for a layer whose neuron k has activation ``acts[k]``.

    Args:
      acts: one :class:`Activation` per neuron, length ``N_l``.
      a: pre-activations, shape ``(..., N_l)``.

    Returns:
      Outputs φ^l, shape ``(..., N_l)``.
    """
    return _apply(acts, a, "phi")


def dphi(acts: Sequence[Activation], a: jax.Array) -> jax.Array:
    """∂φ^l_k/∂a^l_k for every neuron of a layer (Algorithm 2, lines 4-8).

    Args:
      acts: one :class:`Activation` per neuron, length ``N_l``.
      a: pre-activations, shape ``(..., N_l)``.

    Returns:
      The derivatives, shape ``(..., N_l)``.
    """
    return _apply(acts, a, "dphi")


# --- the activations written out, in the paper's notation ----------------------------------

def phi_expression(name: str, arg: str, atomic: bool = False) -> str:
    """``φ(arg)`` written out for the activation called ``name``: ``"(arg)²"``, ``"σ(arg)"``.

    ``arg`` is text (a symbol such as ``"a^1_2"``, or a sum); ``atomic`` says that it needs no
    parentheses (a symbol or a number). Activations without a written form give
    ``"name(arg)"``.
    """
    wrapped = arg if atomic else f"({arg})"
    return {
        "identity": arg,
        "square": f"{wrapped}²",
        "logistic": f"σ({arg})",
        "tanh": f"tanh({arg})",
        "relu": f"max(0, {arg})",
        "softplus": f"log(1 + e^{wrapped})",
    }.get(name, f"{name}({arg})")


def dphi_expression(name: str, l: int, k: int) -> str:
    """``∂φ^l_k/∂a^l_k`` as Algorithm 2 (lines 6-8) writes it for the activation ``name``."""
    return {
        "identity": "1",
        "square": f"2·a^{l}_{k}",
        "logistic": f"φ^{l}_{k}(1−φ^{l}_{k})",
        "tanh": f"(1−(φ^{l}_{k})²)",
        "softplus": f"σ(a^{l}_{k})",
    }.get(name, f"{name}'(a^{l}_{k})")
