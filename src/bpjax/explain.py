"""One sample through the network and back, and one step of Algorithm 1, as the paper writes them.

:func:`explain` runs the forward pass (§1.1), the hand-written backward pass (equations
(2)-(4)) and, given a learning rate, line 6 of Algorithm 1 for one sample ``(x_i, y_i)``, and
keeps every number in the paper's notation:

| paper                                                  | :class:`Explanation`                  |
| ------------------------------------------------------ | ------------------------------------- |
| ``φ^0_k = x_i[k]``                                     | ``step.phi[0] == x``                  |
| ``a^l_k = Σ_{j=0}^{N_{l-1}} w^l_jk φ^{l-1}_j``         | ``step.a[l][k-1]`` (``a[0]`` is None) |
| ``φ^l_k = φ^l_k(a^l_k)``                               | ``step.phi[l][k-1]``                  |
| ``ℓ(φ^L, y_i)``, the sample's loss                     | ``step.loss``                         |
| ``∂ℓ/∂φ^L_k`` (or the fused ``δ^L_k``)                 | ``step.output_error[k-1]``            |
| ``δ^l_k = ∂L/∂a^l_k``, from (2) and (3)                | ``step.delta[l][k-1]``                |
| ``∂L/∂w^l_jk(x_i) = φ^{l-1}_j δ^l_k`` (``φ_0 = 1``)    | ``step.grads[l-1][j, k-1]``           |
| line 6: ``w^l_jk ← w^l_jk − (η/N) ∂L/∂w^l_jk(x_i)``    | ``step.updated[l-1][j, k-1]``         |
| a neuron written out, ``φ^1_2 = (w^1_02 + w^1_12 x[1] + w^1_22 x[2])²`` | ``step.formula(1, 2)`` |
| its delta, ``δ^1_1 = ∂φ^1_1/∂a^1_1 · Σ_r w^2_1r δ^2_r``  | ``step.delta_formula(1, 1)``          |

**Which quantity.** As everywhere in bpjax (DESIGN.md), ``∂L/∂w(x_i)`` is sample ``i``'s term
of the gradient *without* the ``1/N`` of the loss: the gradient of the one sample's loss
``L(x_i) = ℓ(φ^L(x_i), y_i)`` (``½ Σ_k (φ^L_k(x_i) − y_i[k])²`` for loss (1)). It is what
``bp.backprop(net, params, x, y, loss=loss)`` returns for that one sample (``N = 1`` there),
and ``δ`` is likewise ``∂L(x_i)/∂a``, what ``bp.deltas(net, params, x, y, loss=loss)``
returns. Line 6 then divides by the ``N`` of the data set: ``updated = params − (η/N)
grads``, one step of :func:`bpjax.fit` with ``batch_size=1``.

**Every loss.** ``loss=`` takes any loss of :mod:`bpjax.losses`, a user's registered one too.
The backward pass starts where the loss says (:func:`bpjax.losses.output_error`): from
``∂ℓ/∂φ^L_k``, multiplied by ``∂φ^L_k/∂a^L_k`` (equation (2)), or, for a loss's fused form
(binary cross-entropy on logistic outputs), from ``δ^L_k = σ(a^L_k) − y_k`` taken at ``a^L``
itself. ``step.output_error`` holds that starting value and ``step.fused`` which it is; the
text of ``ℓ``, ``∂ℓ/∂φ^L_k`` and the fused ``δ^L_k`` is the loss's own
:class:`bpjax.losses.Notation` (a user's loss without one is written with bare symbols).

No logic is repeated here: the numbers come from :func:`bpjax.forward_trace`,
:func:`bpjax.deltas` and :func:`bpjax.value_and_backprop` (no automatic differentiation), and
line 6 is :func:`bpjax.clamping.apply_update`, the update every trainer applies (clamped
weights keep their values). It is eager, for reading, not for ``jax.jit``. Rendering reads
the values on the host: ``str(step)`` (a text table), :meth:`Explanation.to_markdown`,
:meth:`Explanation.to_html` (and ``_repr_html_``, so a notebook shows the table),
:meth:`Explanation.to_dict` and :meth:`Explanation.to_json`.

Notation: neurons and weights in the paper's numbering, ``k`` from 1 and ``j = 0`` the bias;
the input ``φ^0_k`` is written ``x[k]``; a weight is ``w^l_jk`` (``w^l_(j,k)`` when an index
has two digits). A layer that reads several layers (a DAG) names each input by its source,
``x[k]`` or ``φ^s_k``. Structural zeros (``bias=False``, absent connections) are not weights
of the network: they are listed apart and never change.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bpjax import activations
from bpjax.arguments import number
from bpjax.backward import deltas, value_and_backprop
from bpjax.clamping import apply_update, check_frozen
from bpjax.data import as_inputs, as_targets
from bpjax.forward import forward_trace
from bpjax.loss import resolve_loss
from bpjax.losses import Loss, check_targets, output_error
from bpjax.network import Network, check_network, is_int
from bpjax.params import Params, check_params
from bpjax.paths import row, source

__all__ = ["Explanation", "explain", "weight_symbol"]

MAX_ROWS = 200  # rows of one table (and formulas) rendered; the rest is counted, not shown


def weight_symbol(l: int, j: int, k: int) -> str:
    """``w^l_jk`` in the paper's numbering (``j = 0`` the bias, ``k`` from 1); ``w^l_(j,k)``
    when an index has two digits."""
    return f"w^{l}_{j}{k}" if j < 10 and k < 10 else f"w^{l}_({j},{k})"


def _num(v: float, digits: int = 6) -> str:
    return f"{float(v):.{digits}g}"


def _factor(v: float, digits: int = 6) -> str:
    """A number as a factor of a product: negative numbers in parentheses."""
    s = _num(v, digits)
    return f"({s})" if s.startswith("-") else s


def _numeric(text: str) -> bool:
    """Whether a loss's template written with numbers is numbers only (no ``φ``, ``∂`` or
    subscript left, as in ``softmax(φ^2)_1 − 1``): then it is worth a stage of its own."""
    return not re.search(r"[φ∂_]", text)


def _untangle(text: str) -> str:
    """``((-1.5) − 2)`` → ``(-1.5 − 2)``: a negative number opening parentheses needs none."""
    return re.sub(r"\(\((-[^()\s]+)\)", r"(\1", text)


def _input_symbol(net: Network, l: int, j: int) -> str:
    """What row ``j ≥ 1`` of ``w^l`` multiplies: ``x[k]`` or ``φ^s_k``."""
    s, i = source(net, l, j)
    return f"x[{i}]" if s == 0 else f"φ^{s}_{i}"


class Explanation(NamedTuple):
    """One sample's forward pass, backward pass and (optionally) step of Algorithm 1.

    Attributes:
      net: the network.
      x: the sample's input ``x_i``, shape ``(D,)``.
      y: its target ``y_i``, shape ``(d,)``.
      a: ``a[l]`` is ``a^l`` ``(N_l,)`` for ``l = 1..L``; ``a[0]`` is None (as
        :func:`bpjax.forward_trace`).
      phi: ``phi[l]`` is ``φ^l`` ``(N_l,)`` for ``l = 0..L``; ``phi[0] == x``.
      delta: ``delta[l]`` is ``δ^l = ∂L(x_i)/∂a^l`` ``(N_l,)``; ``delta[0]`` is None (as
        :func:`bpjax.deltas`).
      dphi: ``dphi[l]`` is ``∂φ^l_k/∂a^l_k`` at ``a^l`` ``(N_l,)``, the factor of equation (2)
        (Algorithm 2, lines 4-8); ``dphi[0]`` is None.
      loss: the sample's loss ``L(x_i)`` (``N = 1``), a scalar.
      grads: ``∂L/∂w(x_i)``, shaped like ``params``: ``grads[l-1][j, k-1] == ∂L/∂w^l_jk``,
        equal to ``bp.backprop(net, params, x, y)``.
      params: the weights before the step, ``w^{(t-1)}``, as given (promoted to one dtype).
      learning_rate: ``η``, or None when no step was asked for.
      N: the size of the data set in line 6's ``η/N`` (1 by default).
      updated: ``w^{(t)} = w^{(t-1)} − (η/N) ∂L/∂w(x_i)`` (clamped weights unchanged), or None
        without a learning rate.
      frozen: the clamps (boolean masks shaped like ``params``), or None.
      loss_function: the :class:`bpjax.Loss` (``loss_name`` is its name).
      output_error: where the backward pass starts, ``(d,)``: ``∂ℓ/∂φ^L_k``, or ``δ^L_k``
        itself when ``fused`` (:func:`bpjax.losses.output_error`).
      fused: whether the loss's fused form gives ``δ^L`` at ``a^L`` (binary cross-entropy
        on logistic outputs), skipping ``∂φ^L/∂a^L``.
    """

    net: Network
    x: jax.Array
    y: jax.Array
    a: tuple
    phi: tuple
    delta: tuple
    dphi: tuple
    loss: jax.Array
    grads: Params
    params: Params
    learning_rate: float | None
    N: int
    updated: Params | None
    frozen: Params | None
    loss_function: Loss
    output_error: jax.Array
    fused: bool

    @property
    def loss_name(self) -> str:
        """The loss's name, ``"squared"`` for equation (1)."""
        return self.loss_function.name

    # --- the formulas, neuron by neuron ------------------------------------------------------

    def _check_neuron(self, l, k) -> tuple[int, int]:
        L = self.net.depth
        if not is_int(l) or not 1 <= l <= L:
            raise ValueError(f"layer l must be an int in 1..L = 1..{L}, got {l!r}")
        n = self.net.sizes[l]
        if not is_int(k) or not 1 <= k <= n:
            raise ValueError(f"neuron k of layer {l} must be an int in 1..N_{l} = 1..{n} "
                             f"(counted from 1), got {k!r}")
        return int(l), int(k)

    def _terms(self, l: int, k: int) -> list[tuple[int, str]]:
        """The rows ``j`` that exist in ``a^l_k``'s sum, with the symbol each multiplies."""
        exists = self.net.structure(l)[:, k - 1]
        return [(int(j), "" if j == 0 else _input_symbol(self.net, l, int(j)))
                for j in np.flatnonzero(exists)]

    def _value(self, s: int, i: int) -> float:
        return float(np.asarray(self.phi[s])[i - 1])

    def _sum(self, l: int, k: int, numbers: bool, expand: bool,
             weights: bool = False, digits: int = 6) -> tuple[str, bool]:
        """``a^l_k``'s sum written out: symbols, this sample's numbers (``numbers``), or the
        weights' values before symbols (``weights``: ``0.5 + 1.2 x[1] − 0.8 x[2]``); and
        whether it is a single term (needs no parentheses)."""
        w = np.asarray(self.params[l - 1])
        parts = []  # (negative, text without its sign)
        for j, symbol in self._terms(l, k):
            v = float(w[j, k - 1])
            weight = (_factor(v, digits) if numbers else _num(abs(v), digits) if weights
                      else weight_symbol(l, j, k))
            negative = weights and v < 0
            if j == 0:
                parts.append((negative, _num(v, digits) if numbers else weight))
                continue
            s, i = source(self.net, l, j)
            if numbers:
                parts.append((False, f"{weight}·{_factor(self._value(s, i), digits)}"))
            elif expand and s > 0:
                inner, simple = self._phi_text(s, i, True, weights, digits)
                parts.append((negative, f"{weight} {inner if simple else f'({inner})'}"))
            else:
                parts.append((negative, f"{weight} {symbol}"))
        if not parts:
            return "0", True
        text = ("-" if parts[0][0] else "") + parts[0][1] + "".join(
            (" − " if negative else " + ") + term for negative, term in parts[1:])
        terms = self._terms(l, k)  # one term, the bias alone: a symbol, or a number ≥ 0
        single = len(terms) == 1 and terms[0][0] == 0 and not text.startswith(("(", "-"))
        return text, single

    def _phi_text(self, l: int, k: int, expand: bool, weights: bool = False,
                  digits: int = 6) -> tuple[str, bool]:
        """``φ^l_k`` as its activation of its sum; and whether it is one factor."""
        name = self.net.layer(l).activations[k - 1].name
        total, single = self._sum(l, k, False, expand, weights, digits)
        text = activations.phi_expression(name, total, atomic=single)
        return text, name != "identity" or single

    def formula(self, l: int, k: int, *, numbers: bool = False, expand: bool = False,
                weights: bool = False, digits: int = 6) -> str:
        """Neuron ``(l, k)``'s output written out in the paper's notation.

        ``φ^1_2 = (w^1_02 + w^1_12 x[1] + w^1_22 x[2])²`` for neuron 2 of figure 2's layer 1.

        Args:
          l: the layer, ``1..L``.
          k: the neuron, ``1..N_l`` (counted from 1).
          numbers: also the same with this sample's numbers, and the value:
            ``… = (-1 + 0.5·1 + 3·2)² = (5.5)² = 30.25``.
          expand: write the inputs of a hidden layer out as well, down to ``x`` (for the
            output of figure 2 this is equation (6)); exponential in depth, for small networks.
          weights: write the weights' values instead of their symbols, the inputs staying
            symbols: the function the neuron computes, ``φ^1_2 = (-1 + 0.5 x[1] + 3 x[2])²``
            (with ``expand``, of ``x`` alone).
          digits: the significant digits of the numbers written.

        Returns:
          One line of text.
        """
        l, k = self._check_neuron(l, k)
        digits = int(number(digits, "digits", integer=True, minimum=1))
        text, _ = self._phi_text(l, k, bool(expand), bool(weights), digits)
        if len(text) > 20_000:
            raise ValueError(f"φ^{l}_{k} written out is {len(text)} characters long; "
                             f"use expand=False")
        out = [f"φ^{l}_{k}", text]
        if numbers:
            name = self.net.layer(l).activations[k - 1].name
            total, single = self._sum(l, k, True, False, False, digits)
            a = float(np.asarray(self.a[l])[k - 1])
            out += [activations.phi_expression(name, total, atomic=single),
                    activations.phi_expression(name, _num(a, digits), atomic=a >= 0),
                    _num(self._value(l, k), digits)]
        return " = ".join(dict.fromkeys(out))  # repeated stages (identity) once

    def delta_formula(self, l: int, k: int, *, numbers: bool = False) -> str:
        """Neuron ``(l, k)``'s ``δ^l_k = ∂L/∂a^l_k``, equations (2) and (3) written out.

        For an output neuron, ``δ^L_k = ∂L/∂φ^L_k · ∂φ^L_k/∂a^L_k``; for a hidden one,
        ``δ^l_k = ∂φ^l_k/∂a^l_k · Σ w^m_jr δ^m_r`` over every connection out of it (in a DAG,
        into every later layer that reads it): the chain rule summed over paths.

        Args:
          l: the layer, ``1..L``.
          k: the neuron, ``1..N_l``.
          numbers: also the same with this sample's numbers, and the value.

        Returns:
          One line of text.
        """
        l, k = self._check_neuron(l, k)
        net, L = self.net, self.net.depth
        name = net.layer(l).activations[k - 1].name
        dphi_sym = activations.dphi_expression(name, l, k)
        dphi_val = float(np.asarray(self.dphi[l])[k - 1])
        value = _num(np.asarray(self.delta[l])[k - 1])
        head = f"δ^{l}_{k}"
        if l == L:
            return " = ".join(dict.fromkeys(self._output_delta(k, dphi_sym, dphi_val, numbers)))
        rows = {m: row(net, m, l, k) for m in net.consumers(l)}  # the row of w^m reading φ^l_k
        terms = [(m, j, r) for m, j in rows.items()
                 for r in np.flatnonzero(net.structure(m)[j]) + 1]
        if not terms:
            return (f"{head} = 0: φ^{l}_{k} feeds no neuron, so no path leads from it to the "
                    f"output")
        total = " + ".join(f"{weight_symbol(m, j, int(r))} δ^{m}_{r}" for m, j, r in terms)
        out = [head, f"∂φ^{l}_{k}/∂a^{l}_{k} · ({total})", f"{dphi_sym} · ({total})"]
        if numbers:
            w = [np.asarray(p) for p in self.params]
            d = [None if v is None else np.asarray(v) for v in self.delta]
            nums = " + ".join(f"{_factor(w[m - 1][j, r - 1])}·{_factor(d[m][r - 1])}"
                              for m, j, r in terms)
            out += [f"{_factor(dphi_val)} · ({nums})", value]
        return " = ".join(dict.fromkeys(out))

    def _output_delta(self, k: int, dphi_sym: str, dphi_val: float, numbers: bool) -> list:
        """The stages of ``δ^L_k``: the loss's derivative (its :class:`~bpjax.losses.Notation`)
        times ``∂φ^L_k/∂a^L_k``, or the fused ``δ^L_k`` alone; with numbers, the template
        with this sample's numbers when that is numbers only, the factors' values, the value."""
        L, notation = self.net.depth, self.loss_function.notation
        phi, y = self._value(L, k), float(np.asarray(self.y)[k - 1])
        a = float(np.asarray(self.a[L])[k - 1])
        e, value = np.asarray(self.output_error)[k - 1], _num(np.asarray(self.delta[L])[k - 1])
        nums = {"phi": _factor(phi), "a": _factor(a), "y": _factor(y)}
        if self.fused:
            template = notation.delta
            out = [f"δ^{L}_{k}", f"∂ℓ/∂a^{L}_{k}", notation.output(template, k, L=L)]
            written = _untangle(notation.output(template, k, L=L, **nums))
            if numbers:
                out += [written] if _numeric(written) else []
                out.append(value)
            return out
        template = notation.dell  # in parentheses unless one symbol (a user's bare ∂ℓ/∂φ^L_k)
        template = f"({template})" if " " in notation.output(template, k, L=L) else template
        out = [f"δ^{L}_{k}", f"∂ℓ/∂φ^{L}_{k} · ∂φ^{L}_{k}/∂a^{L}_{k}",
               f"{notation.output(template, k, L=L)} · {dphi_sym}"]
        if numbers:
            written = _untangle(notation.output(template, k, L=L, **nums))
            out.append(f"{written} · {_factor(dphi_val)}" if _numeric(written)
                       else f"{_factor(e)} · {_factor(dphi_val)}")
            out.append(value)
        return out

    def formulas(self, *, numbers: bool = False) -> tuple[str, ...]:
        """:meth:`formula` of every neuron, layer by layer (``l = 1..L``, ``k = 1..N_l``)."""
        return tuple(self.formula(l, k, numbers=numbers)
                     for l in range(1, self.net.depth + 1)
                     for k in range(1, self.net.sizes[l] + 1))

    # --- the numbers as rows -----------------------------------------------------------------

    def _weights(self):
        """``(l, j, k, w, ∂L/∂w, updated or None, clamped)`` for every weight that exists."""
        w = [np.asarray(p) for p in self.params]
        g = [np.asarray(p) for p in self.grads]
        u = None if self.updated is None else [np.asarray(p) for p in self.updated]
        f = None if self.frozen is None else [np.asarray(p) for p in self.frozen]
        for l in range(1, self.net.depth + 1):
            rows, cols = np.nonzero(self.net.structure(l))
            for j, c in zip(rows.tolist(), cols.tolist()):
                yield (l, j, c + 1, float(w[l - 1][j, c]), float(g[l - 1][j, c]),
                       None if u is None else float(u[l - 1][j, c]),
                       bool(f is not None and f[l - 1][j, c]))

    def structural_zeros(self) -> tuple[str, ...]:
        """The symbols ``w^l_jk`` that are not weights of the network (``bias=False``, absent
        connections): never used, gradient 0."""
        return tuple(weight_symbol(l, int(j), int(c) + 1) for l in range(1, self.net.depth + 1)
                     for j, c in zip(*np.nonzero(~self.net.structure(l))))

    def _document(self, max_rows: int):
        """The rendering, format-free: ``("p", text)``, ``("table", headers, rows)`` and
        ``("lines", lines)``; notation is marked with backticks in text, ``_Sym`` in cells."""
        net, L = self.net, self.net.depth
        x = ", ".join(_num(v) for v in np.asarray(self.x))
        y = ", ".join(_num(v) for v in np.asarray(self.y))
        doc = [("p", f"One sample through the network and back: `x_i = ({x})`, "
                     f"`y_i = ({y})`, {self.loss_name} loss `{self.loss_formula()}` "
                     f"= {_num(self.loss)}."),
               ("p", "Forward (§1.1): `a^l_k = Σ_j w^l_jk φ^{l-1}_j` with `φ^{l-1}_0 = 1`, "
                     "`φ^l_k = φ^l_k(a^l_k)`. Backward, equations (2)-(3): `δ^l_k = ∂L/∂a^l_k "
                     "= ∂φ^l_k/∂a^l_k · Σ_r w^{l+1}_kr δ^{l+1}_r` (in a DAG, over every layer "
                     "that reads `φ^l_k`), and `∂L/∂w^l_jk = φ^{l-1}_j δ^l_k`. These are the "
                     "gradients of this one sample's loss: sample i's term of ∂L/∂w without "
                     "the 1/N, what `bp.backprop(net, params, x, y, loss=...)` returns.")]
        rows = []
        for l in range(L + 1):
            for k in range(1, net.sizes[l] + 1):
                phi = _num(np.asarray(self.phi[l])[k - 1])
                if l == 0:
                    rows.append([_Sym(f"x[{k}]"), "0", str(k), "input", "", phi, "", ""])
                    continue
                name = net.layer(l).activations[k - 1].name
                rows.append([_Sym(f"φ^{l}_{k}"), str(l), str(k),
                             _Sym(activations.phi_expression(name, "z", atomic=True)),
                             _num(np.asarray(self.a[l])[k - 1]), phi,
                             _num(np.asarray(self.dphi[l])[k - 1]),
                             _num(np.asarray(self.delta[l])[k - 1])])
        doc.append(("table", ["neuron", "l", "k", "φ^l_k(z)", "a^l_k", "φ^l_k",
                              "∂φ^l_k/∂a^l_k", "δ^l_k = ∂L/∂a^l_k"], rows))
        doc += self._loss_blocks()

        step = self.learning_rate is not None
        headers = ["weight", "w^l_jk", "φ^{l-1}_j", "δ^l_k", "∂L/∂w^l_jk = φ^{l-1}_j δ^l_k"]
        if step:
            headers.append("w^l_jk − (η/N) ∂L/∂w^l_jk")
        rows = []
        for l, j, k, w, g, u, clamped in self._weights():
            phi_in = "1 (bias)" if j == 0 else _Sym(
                f"{_input_symbol(net, l, j)} = {_num(self._value(*source(net, l, j)))}")
            row = [_Sym(weight_symbol(l, j, k)), _num(w), phi_in,
                   _num(np.asarray(self.delta[l])[k - 1]), _num(g)]
            if step:
                row.append(_num(u) + (" (clamped)" if clamped else ""))
            rows.append(row)
        if step:
            doc.append(("p", f"Algorithm 1, line 6, with `η = {_num(self.learning_rate)}` and "
                             f"`N = {self.N}`: `w^l_jk ← w^l_jk − (η/N) ∂L/∂w^l_jk(x_i)`, "
                             f"a step of `η/N = {_num(self.learning_rate / self.N)}`"
                             + (" (clamped weights keep their values)."
                                if self.frozen is not None else ".")))
        doc.append(("table", headers, rows))
        zeros = self.structural_zeros()
        if zeros:
            doc.append(("p", "Structural zeros (not weights of this network, never changed): "
                             + ", ".join(f"`{z}`" for z in zeros) + "."))
        doc.append(("p", "Each neuron written out (forward):"))
        doc.append(("lines", [self.formula(l, k, numbers=True)
                              for l in range(1, L + 1) for k in range(1, net.sizes[l] + 1)]))
        doc.append(("p", "Each delta written out (backward, from the output):"))
        doc.append(("lines", [self.delta_formula(l, k, numbers=True)
                              for l in range(L, 0, -1) for k in range(1, net.sizes[l] + 1)]))
        return [_capped(block, max_rows) for block in doc]

    def proba(self) -> np.ndarray | None:
        """A classification loss's class probabilities of this sample, ``(d,)``
        (:func:`bpjax.predict_proba`: ``softmax(φ^L)`` or ``φ^L``); None for other losses."""
        f = self.loss_function.proba
        return None if f is None else np.asarray(f(self.phi[-1]))

    def loss_formula(self) -> str:
        """The sample's loss written in the paper's notation: ``L(x_i) = ½ Σ_k (φ^L_k −
        y_k)²`` for loss (1), from the loss's :class:`~bpjax.losses.Notation`."""
        return f"L(x_i) = {self.loss_function.notation.ell}"

    def _loss_blocks(self) -> list:
        """Where the backward pass starts: a paragraph and a table of the output neurons."""
        L, notation = self.net.depth, self.loss_function.notation
        e = np.asarray(self.output_error)
        if self.fused:
            delta = notation.output(notation.delta, "k")
            act = self.loss_function.fused.activation.name
            text = (f"The backward pass starts from the sample's loss `ℓ = L(x_i)`. The output "
                    f"neurons are all "
                    f"{act}, so the loss gives `δ^L_k = ∂ℓ/∂a^L_k = {delta}` at `a^L` "
                    f"directly (its fused form): the same as `∂ℓ/∂φ^L_k · ∂φ^L_k/∂a^L_k`, "
                    f"without a `∂φ^L_k/∂a^L_k` that underflows to 0 where the unit saturates.")
            headers = ["output", "y_k", "a^L_k", "φ^L_k",
                       " = ".join(dict.fromkeys(["δ^L_k", "∂ℓ/∂a^L_k", delta]))]
            rows = [[_Sym(f"φ^{L}_{k}"), _num(np.asarray(self.y)[k - 1]),
                     _num(np.asarray(self.a[L])[k - 1]), _num(self._value(L, k)), _num(e[k - 1])]
                    for k in range(1, self.net.outputs + 1)]
        else:
            dell = notation.output(notation.dell, "k")
            text = (f"The backward pass starts from the sample's loss `ℓ = L(x_i)`: "
                    f"`∂ℓ/∂φ^L_k = {dell}`, then "
                    f"equation (2) at the output, `δ^L_k = ∂ℓ/∂φ^L_k · ∂φ^L_k/∂a^L_k`.")
            p = self.proba()  # a classifier's: the probabilities its ∂ℓ/∂φ^L compares with y
            headers = ["output", "y_k", "φ^L_k", *(["P(class k)"] if p is not None else []),
                       " = ".join(dict.fromkeys(["∂ℓ/∂φ^L_k", dell])),
                       "∂φ^L_k/∂a^L_k", "δ^L_k = ∂ℓ/∂φ^L_k · ∂φ^L_k/∂a^L_k"]
            rows = [[_Sym(f"φ^{L}_{k}"), _num(np.asarray(self.y)[k - 1]), _num(self._value(L, k)),
                     *([_num(p[k - 1])] if p is not None else []),
                     _num(e[k - 1]), _num(np.asarray(self.dphi[L])[k - 1]),
                     _num(np.asarray(self.delta[L])[k - 1])]
                    for k in range(1, self.net.outputs + 1)]
        return [("p", text), ("table", headers, rows)]

    # --- renderings --------------------------------------------------------------------------

    def to_text(self, max_rows: int = MAX_ROWS) -> str:
        """The plain-text table (what ``str(step)`` and ``print(step)`` show).

        Args:
          max_rows: the most rows shown per table (and formulas per list); the rest are counted.
        """
        out = []
        for block in self._document(_rows(max_rows)):
            if block[0] == "p":
                out.append(textwrap.fill(block[1].replace("`", ""), 100))
            elif block[0] == "lines":
                out.append("\n".join(f"  {line}" for line in block[1]))
            else:
                _, headers, rows = block
                cells = [headers, *rows]
                width = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
                lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, width)).rstrip()
                         for r in cells]
                lines.insert(1, "  ".join("-" * w for w in width))
                out.append("\n".join(lines))
        return "\n\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (f"Explanation(one sample of {self.net!r}, {self.loss_name} loss "
                f"{_num(self.loss)}; print() it for the table)")

    def to_markdown(self, max_rows: int = MAX_ROWS) -> str:
        """The same as a Markdown document: tables, notation in backticks."""
        out = []
        for block in self._document(_rows(max_rows)):
            if block[0] == "p":
                out.append(block[1])
            elif block[0] == "lines":
                out.append("\n".join(f"- `{line}`" if not line.startswith("…") else f"- {line}"
                                     for line in block[1]))
            else:
                _, headers, rows = block

                def cell(c):
                    return f"`{c}`" if isinstance(c, _Sym) else str(c)

                lines = ["| " + " | ".join(f"`{h}`" if _notation(h) else h for h in headers)
                         + " |", "|" + "---|" * len(headers)]
                lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
                out.append("\n".join(lines))
        return "\n\n".join(out) + "\n"

    def to_html(self, max_rows: int = MAX_ROWS) -> str:
        """The same as HTML, superscripts and subscripts as ``<sup>``/``<sub>``."""
        out = ['<div class="bpjax-explain">']
        for block in self._document(_rows(max_rows)):
            if block[0] == "p":
                parts = block[1].split("`")
                out.append("<p>" + "".join(_html(p) if i % 2 else html.escape(p)
                                           for i, p in enumerate(parts)) + "</p>")
            elif block[0] == "lines":
                out.append("<ul>" + "".join(f"<li>{_html(line)}</li>" for line in block[1])
                           + "</ul>")
            else:
                _, headers, rows = block
                cell = "padding:2px 10px;border:none;text-align:"  # inline: survives sanitisers
                head = "".join(f'<th style="{cell}center;border-bottom:1px solid #888">'
                               f"{_html(h)}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(f'<td style="{cell}{"left" if _left(c) else "right"}">'
                                     f"{_html(str(c))}</td>" for c in r) + "</tr>"
                    for r in rows)
                out.append(f'<table style="border-collapse:collapse;margin:0.5em 0">'
                           f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return "\n".join([*out, "</div>"])

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_dict(self) -> dict:
        """Everything as plain JSON types: the network, the sample, every neuron (``a``,
        ``φ``, ``∂φ/∂a``, ``δ``, its formulas: symbolic, with this sample's numbers, and with
        the weights' values) and every weight (``w``, ``∂L/∂w``, the updated value),
        and the weight arrays themselves (``params[l-1][j][k-1]``) to load elsewhere.

        Returns:
          A dict of lists, floats, ints, strings, booleans and None (JSON's types; a
          non-finite number is a float NaN or infinity, which ``json`` writes as ``NaN``).
        """
        net, L = self.net, self.net.depth
        notation = self.loss_function.notation

        def arrays(tree):
            return None if tree is None else [np.asarray(v, np.float64).tolist() for v in tree]

        neurons = [{"l": 0, "k": k, "symbol": f"x[{k}]", "activation": None, "a": None,
                    "phi": float(np.asarray(self.phi[0])[k - 1]), "dphi": None, "delta": None,
                    "formula": None, "delta_formula": None}
                   for k in range(1, net.inputs + 1)]
        for l in range(1, L + 1):
            for k in range(1, net.sizes[l] + 1):
                neurons.append({
                    "l": l, "k": k, "symbol": f"φ^{l}_{k}",
                    "activation": net.layer(l).activations[k - 1].name,
                    "a": float(np.asarray(self.a[l])[k - 1]),
                    "phi": float(np.asarray(self.phi[l])[k - 1]),
                    "dphi": float(np.asarray(self.dphi[l])[k - 1]),
                    "delta": float(np.asarray(self.delta[l])[k - 1]),
                    "formula": self.formula(l, k),
                    "formula_numbers": self.formula(l, k, numbers=True),
                    "formula_weights": self.formula(l, k, weights=True),
                    "delta_formula": self.delta_formula(l, k, numbers=True),
                })
        weights = [{"l": l, "j": j, "k": k, "symbol": weight_symbol(l, j, k), "w": w,
                    "grad": g, "updated": u, "clamped": c}
                   for l, j, k, w, g, u, c in self._weights()]
        layers = [{"size": layer.size,
                   "activations": [a.name for a in layer.activations],
                   "inputs": list(net.sources(l)), "bias": bool(layer.bias),
                   "adjacency": None if layer.adjacency is None
                   else [list(r) for r in layer.adjacency]}
                  for l, layer in enumerate(net.layers, start=1)]
        return {
            "network": {"inputs": net.inputs, "sizes": list(net.sizes), "layers": layers},
            "x": np.asarray(self.x, np.float64).tolist(),
            "y": np.asarray(self.y, np.float64).tolist(),
            "loss": {"name": self.loss_name, "value": float(self.loss),
                     "formula": self.loss_formula(), "fused": self.fused,
                     "output_error": (
                         f"δ^L_k = {notation.output(notation.delta, 'k')}" if self.fused
                         else f"∂ℓ/∂φ^L_k = {notation.output(notation.dell, 'k')}"),
                     "output_error_values": np.asarray(self.output_error, np.float64).tolist(),
                     "proba": None if self.proba() is None
                     else np.asarray(self.proba(), np.float64).tolist()},
            "learning_rate": None if self.learning_rate is None else float(self.learning_rate),
            "N": self.N,
            "neurons": neurons,
            "weights": weights,
            "structural_zeros": list(self.structural_zeros()),
            "params": arrays(self.params),
            "grads": arrays(self.grads),
            "updated": arrays(self.updated),
        }

    def to_json(self, **kwargs) -> str:
        """:meth:`to_dict` as JSON text; ``kwargs`` go to ``json.dumps`` (e.g. ``indent=2``)."""
        kwargs.setdefault("ensure_ascii", False)
        return json.dumps(self.to_dict(), **kwargs)


class _Sym(str):
    """A table cell in the paper's notation (backticks in Markdown, sup/sub in HTML)."""


def _left(cell) -> bool:
    """Symbols and words align left in a table, numbers right."""
    try:
        float(cell)
    except ValueError:
        return True
    return False


def _notation(text: str) -> bool:
    return bool(re.search(r"[\^_]", text))


def _rows(max_rows) -> int:
    return int(number(max_rows, "max_rows", integer=True, minimum=1))


def _capped(block, max_rows: int):
    """A block with at most ``max_rows`` rows (lines), and a line counting the others."""
    if block[0] == "table" and len(block[2]) > max_rows:
        more = len(block[2]) - max_rows
        filler = [f"… {more} more rows"] + [""] * (len(block[1]) - 1)
        return ("table", block[1], [*block[2][:max_rows], filler])
    if block[0] == "lines" and len(block[1]) > max_rows:
        return ("lines", [*block[1][:max_rows], f"… {len(block[1]) - max_rows} more"])
    return block


_SCRIPT = re.compile(r"(?<![A-Za-z])([A-Za-zφδσΣ])"  # a one-letter symbol
                     r"(?:\^(\{[^}]*\}|[A-Za-z0-9]+))?"  # ^sup, ^{sup}
                     r"_(\([^)]*\)|[A-Za-z0-9]+)"  # _sub, _(j,k)
                     r"|(?<![A-Za-z])([A-Za-zφδσΣ])\^(\{[^}]*\}|[A-Za-z0-9]+)"  # ^sup alone
                     r"|(?<=\))_([A-Za-z0-9]+)")  # softmax(φ^L)_k


def _html(text: str) -> str:
    """Notation as HTML: ``w^1_02`` → ``w<sup>1</sup><sub>02</sub>``, ``φ^{l-1}_j`` likewise."""

    def sub(m):
        if m.group(6):
            return f"<sub>{m.group(6)}</sub>"
        if m.group(4):
            return f"{m.group(4)}<sup>{m.group(5).strip('{}')}</sup>"
        sup = "" if m.group(2) is None else f"<sup>{m.group(2).strip('{}')}</sup>"
        return f"{m.group(1)}{sup}<sub>{m.group(3)}</sub>"

    return _SCRIPT.sub(sub, html.escape(text))


def explain(net: Network, params: Params, x, y, *, learning_rate=None, N: int = 1,
            frozen: Params | None = None, loss: str | Loss = "squared") -> Explanation:
    """One sample ``(x_i, y_i)`` through the network and back, and a step of Algorithm 1.

    Example (the paper's figure 2 and its table, one step of Algorithm 1)::

        step = bp.explain(net, params, x, y, learning_rate=0.5, N=200)
        print(step)                    # a, φ, δ, ∂L/∂w and the updated w, in the paper's notation
        step.formula(1, 2)             # 'φ^1_2 = (w^1_02 + w^1_12 x[1] + w^1_22 x[2])²'
        step.grads                     # == bp.backprop(net, params, x, y)

    A classifier's sample, with the loss it is trained with (a class label is one-hot), here
    two layers with identity outputs (the logits)::

        step = bp.explain(net, params, x, 1, loss="softmax_cross_entropy")
        step.delta_formula(2, 2)       # 'δ^2_2 = ∂ℓ/∂φ^2_2 · ∂φ^2_2/∂a^2_2
                                       #  = (softmax(φ^2)_2 − y_2) · 1'

    Args:
      net: the network (any DAG).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``: the weights ``w^{(t-1)}``.
      x: one input ``x_i`` of shape ``(D,)``.
      y: its target ``y_i``, shape ``(d,)`` (a number when ``d = 1``); one integer class
        label when ``d > 1`` (one-hot encoded), as in :func:`bpjax.loss`.
      learning_rate: ``η > 0`` for the step of Algorithm 1, line 6; None for no step.
      N: the number of samples ``N`` of the data set, the ``1/N`` of line 6 (``≥ 1``).
      frozen: optional clamps, boolean masks shaped like ``params`` (:func:`bpjax.clamp`):
        those weights keep their values in the step.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``, equation (1));
        any loss of :mod:`bpjax.losses`, a user's registered one too.

    Returns:
      An :class:`Explanation`; ``print`` it for the table, see the module's docstring.

    Raises:
      TypeError, ValueError: a bad argument (the message names it), before any work.
    """
    check_network(net, "explain")
    loss = resolve_loss(net, loss)
    params = check_params(net, params)
    X, single = as_inputs(net, x, "x")
    if not single:
        raise ValueError(f"explain takes one sample: x must have shape (D,) = ({net.inputs},), "
                         f"got shape {np.shape(x)}")
    one_number = np.ndim(y) == 0 and net.outputs == 1  # y_i as a number, d = 1
    Y = as_targets(net, np.reshape(y, -1) if one_number else y, 1, True, "y", "x")
    check_targets(loss, Y, "y")
    if learning_rate is not None:
        learning_rate = float(number(learning_rate, "learning_rate", minimum=0, strict=True))
    N = int(number(N, "N", integer=True, minimum=1))
    if learning_rate is None and N != 1:
        raise ValueError("N is the 1/N of Algorithm 1's step: pass learning_rate too")
    frozen = check_frozen(net, frozen)
    if frozen is not None and learning_rate is None:
        raise ValueError("frozen= clamps weights in the step: pass learning_rate too")

    tr = forward_trace(net, params, X[0])  # line 23 of Algorithm 2: a and φ stored
    dtype = tr.phi[-1].dtype
    y = jnp.asarray(Y[0], dtype)
    delta = deltas(net, params, X[0], y, loss=loss)
    value, grads = value_and_backprop(net, params, X[0], y, loss=loss)
    e, fused = output_error(loss, net, tr, y)  # where the backward pass starts
    params = tuple(jnp.asarray(w, dtype) for w in params)
    updated = None
    if learning_rate is not None:  # line 6: w ← w − (η/N) ∂L/∂w(x_i)
        updated = tuple(apply_update(w, -(learning_rate / N) * g,
                                     None if frozen is None else ~f)
                        for w, g, f in zip(params, grads, frozen or (None,) * net.depth))
    dphi = (None, *(activations.dphi(layer.activations, a)  # equation (2)'s ∂φ^l_k/∂a^l_k
                    for layer, a in zip(net.layers, tr.a[1:])))
    return Explanation(
        net=net, x=tr.phi[0], y=y, a=tr.a, phi=tr.phi,
        delta=(None, *(d[0] for d in delta[1:])), dphi=dphi, loss=value, grads=grads, params=params,
        learning_rate=learning_rate, N=N, updated=updated, frozen=frozen,
        loss_function=loss, output_error=e, fused=fused)
