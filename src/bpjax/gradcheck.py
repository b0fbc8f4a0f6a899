"""A gradient checker: the hand-written backward pass against independent references.

:func:`check_gradients` compares :func:`bpjax.backprop` with ``jax.grad`` of the loss and,
optionally, with central finite differences, layer by layer and element by element, in
float64 (inside ``jax.enable_x64``, so the process-wide flag is left alone).
:func:`check_activation` checks an activation's hand-written derivative against ``jax.grad``
of its function, and :func:`check_loss` a loss's ``∂ℓ/∂φ^L`` (and its fused ``δ^L``) against
``jax.grad`` of ``ℓ`` — the places where a user's own function is most likely to be wrong.

This module, and the tests, are the only places where bpjax uses automatic differentiation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from bpjax import activations as _activations
from bpjax.activations import Activation
from bpjax.arguments import number
from bpjax.backward import loss_and_gradients_jit
from bpjax.data import check_finite, real_array
from bpjax.loss import loss_of_params, prepare_supervised, resolve_loss
from bpjax.losses import Loss, get_loss
from bpjax.network import Network, check_network
from bpjax.params import Params

__all__ = [
    "GradCheckReport",
    "GradientCheckError",
    "LayerCheck",
    "check_activation",
    "check_gradients",
    "check_loss",
]


class LayerCheck(NamedTuple):
    """The comparison of one layer's gradient with a reference.

    Attributes:
      l: the layer, ``1..L``.
      max_abs: ``max_jk |g_jk − ref_jk|``.
      max_rel: ``max_jk |g_jk − ref_jk| / |ref_jk|`` (over entries with ``ref_jk ≠ 0``).
      worst: ``(j, k)`` of the entry furthest outside ``atol + rtol·|ref|``, in the paper's
        indices: ``j = 0`` is the bias, neurons ``k`` count from 1 (array column ``k − 1``).
      ok: whether every entry satisfies ``|g − ref| ≤ atol + rtol·|ref|``.
    """

    l: int
    max_abs: float
    max_rel: float
    worst: tuple[int, int]
    ok: bool


class GradCheckReport(NamedTuple):
    """The result of :func:`check_gradients`; ``str(report)`` is a readable table.

    Attributes:
      ok: every comparison passed.
      loss: the loss at the checked point, float64.
      against_autodiff: one :class:`LayerCheck` per layer, backprop vs ``jax.grad``.
      against_finite_differences: the same against central differences, or ``None``.
      worst: ``(l, j, k)`` of the worst entry over all layers and references (paper indices).
      activations: what :func:`check_activation` found wrong with the network's activations'
        hand-written derivatives, one message each; ``()`` when they are right.
      loss_derivatives: what :func:`check_loss` found wrong with the loss's hand-written
        derivatives; ``()`` when they are right.
      loss_name: the name of the loss checked.
    """

    ok: bool
    loss: float
    against_autodiff: tuple[LayerCheck, ...]
    against_finite_differences: tuple[LayerCheck, ...] | None
    worst: tuple[int, int, int]
    activations: tuple[str, ...] = ()
    loss_derivatives: tuple[str, ...] = ()
    loss_name: str = "squared"

    def __str__(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        out = [f"gradient check {verdict} (float64, {self.loss_name} loss = {self.loss:.6g})"]
        for name, rows in (("jax.grad", self.against_autodiff),
                           ("finite differences", self.against_finite_differences)):
            if rows is None:
                continue
            out.append(f"  backprop vs {name}:")
            out.append("    l   max |Δ|     max rel     worst w^l_jk   ok")
            for r in rows:
                j, k = r.worst
                out.append(f"    {r.l:<3d} {r.max_abs:<11.3e} {r.max_rel:<11.3e} "
                           f"{f'w^{r.l}_({j},{k})':<14s} {'yes' if r.ok else 'NO'}")
        l, j, k = self.worst
        out.append(f"  worst entry: w^{l}_({j},{k}) = grads[{l - 1}][{j}, {k - 1}]")
        out.extend(f"  {message}" for message in (*self.activations, *self.loss_derivatives))
        return "\n".join(out)


class GradientCheckError(ValueError):
    """Raised when a gradient or a derivative does not match its reference."""

    def __init__(self, message: str, report: GradCheckReport | None = None):
        super().__init__(message)
        self.report = report


def _compare(l: int, g: np.ndarray, ref: np.ndarray, rtol: float, atol: float):
    diff = np.abs(g - ref)
    nonzero = ref != 0
    max_rel = float((diff[nonzero] / np.abs(ref[nonzero])).max()) if nonzero.any() else 0.0
    excess = diff / (atol + rtol * np.abs(ref))
    excess = np.where(np.isnan(excess), np.inf, excess)  # NaN anywhere is a failure
    j, k = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return LayerCheck(l, float(diff.max()), max_rel, (int(j), int(k) + 1),
                      bool(excess.max() <= 1)), float(excess.max())


def _table(grads, refs, rtol, atol):
    rows, worst = [], (-1.0, (1, 0, 1))
    for l, (g, ref) in enumerate(zip(grads, refs), start=1):
        row, excess = _compare(l, np.asarray(g), np.asarray(ref), rtol, atol)
        rows.append(row)
        if excess > worst[0]:
            worst = (excess, (l, *row.worst))
    return tuple(rows), worst


_autodiff_grad = jax.jit(jax.grad(loss_of_params, argnums=1), static_argnums=(0, 5))


@jax.jit(static_argnums=(0, 5, 6))
def _finite_differences(net: Network, params: Params, X, Y, s, eps: float,
                        loss: Loss) -> Params:
    """Central differences ``(L(w + ε e) − L(w − ε e)) / 2ε`` for every entry of ``params``."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def central(i):
        e = jnp.zeros_like(flat).at[i].set(eps)
        return (loss_of_params(net, unravel(flat + e), X, Y, s, loss)
                - loss_of_params(net, unravel(flat - e), X, Y, s, loss)) / (2 * eps)

    return unravel(jax.lax.map(central, jnp.arange(flat.size), batch_size=64))


def check_gradients(
    net: Network,
    params: Params,
    X,
    Y,
    *,
    weights=None,
    finite_differences: bool = False,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    fd_eps: float = 1e-6,
    fd_rtol: float = 1e-5,
    fd_atol: float = 1e-8,
    raise_on_failure: bool = True,
    loss="squared",
) -> GradCheckReport:
    """Checks :func:`bpjax.backprop` against ``jax.grad`` (and finite differences) in float64.

    Every activation of the network is checked first with :func:`check_activation`, and the
    loss with :func:`check_loss`, so a wrong or non-finite user derivative is named directly.

    Args:
      net: the network.
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``; cast to float64 for the check.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.
      Y: targets ``(N, d)`` (``(N,)`` if ``d = 1``), or one ``y`` of shape ``(d,)``.
      weights: optional per-sample weights ``(N,)``.
      finite_differences: also compare with central differences (one pair of loss
        evaluations per weight: for small networks).
      rtol, atol: an entry passes when ``|g − ref| ≤ atol + rtol·|ref|`` against ``jax.grad``.
      fd_eps: the finite-difference step ε.
      fd_rtol, fd_atol: the same tolerances against finite differences.
      raise_on_failure: raise :class:`GradientCheckError` on a mismatch (default), naming a
        wrong activation or loss derivative first; otherwise always return the report, with
        ``ok == False`` and the failures in ``report.activations`` and
        ``report.loss_derivatives``.
      loss: the loss, a name or a :class:`bpjax.Loss` (default ``"squared"``); its
        hand-written ``∂ℓ/∂φ^L`` (and fused ``δ^L``) are checked with :func:`check_loss`.

    Returns:
      A :class:`GradCheckReport`.

    Raises:
      TypeError, ValueError: a bad argument (tolerances must be finite and ``≥ 0``, ``fd_eps``
        ``> 0``), NaN or Inf in the data or weights; before any work.
      GradientCheckError: a mismatch, with ``raise_on_failure``.
    """
    check_network(net, "check_gradients")
    for name, v in (("rtol", rtol), ("atol", atol), ("fd_rtol", fd_rtol), ("fd_atol", fd_atol)):
        number(v, name, minimum=0)
    number(fd_eps, "fd_eps", minimum=0, strict=True)
    for name, v in (("finite_differences", finite_differences),
                    ("raise_on_failure", raise_on_failure)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {v!r}")
    loss = resolve_loss(net, loss)
    params, X2, Y2, s = prepare_supervised(net, params, X, Y, weights, loss)
    check_finite(X=X2, Y=Y2, weights=s, **{f"params[{i}]": w for i, w in enumerate(params)})
    failures, loss_failures = [], []
    for act in dict.fromkeys(a for layer in net.layers for a in layer.activations):
        try:
            check_activation(act)
        except GradientCheckError as e:
            if raise_on_failure:
                raise
            failures.append(str(e))
    try:
        check_loss(loss, d=net.outputs)
    except GradientCheckError as e:
        if raise_on_failure:
            raise
        loss_failures.append(str(e))

    with jax.enable_x64(True):
        f64 = lambda v: None if v is None else jnp.asarray(np.asarray(v, np.float64))  # noqa: E731
        params64 = tuple(f64(w) for w in params)
        X64, Y64, s64 = f64(X2), f64(Y2), f64(s)

        value, grads = loss_and_gradients_jit(net, params64, X64, Y64, s64, loss)
        ref = _autodiff_grad(net, params64, X64, Y64, s64, loss)
        ad_rows, worst = _table(grads, ref, rtol, atol)
        fd_rows = None
        if finite_differences:
            fd = _finite_differences(net, params64, X64, Y64, s64, float(fd_eps), loss)
            fd_rows, fd_worst = _table(grads, fd, fd_rtol, fd_atol)
            worst = max(worst, fd_worst, key=lambda t: t[0])
        value = float(value)

    ok = all(r.ok for r in ad_rows + (fd_rows or ())) and not failures and not loss_failures
    report = GradCheckReport(ok, value, ad_rows, fd_rows, worst[1], tuple(failures),
                             tuple(loss_failures), loss.name)
    if not ok and raise_on_failure:
        raise GradientCheckError(f"backprop does not match its reference\n{report}", report)
    return report


def check_activation(
    activation: str | Activation,
    a=None,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> float:
    """Checks an activation's hand-written ``dphi`` against ``jax.grad(phi)``, in float64.

    Args:
      activation: a registered name or an :class:`~bpjax.Activation`.
      a: the points to check, any shape; default 401 points on ``[-8, 8]`` and a few kinks.
        Points where ``phi`` or its autodiff derivative is not finite are skipped.
      rtol, atol: a point passes when ``|dphi − grad| ≤ atol + rtol·|grad|``.

    Returns:
      The largest absolute difference.

    Raises:
      GradientCheckError: ``dphi`` returns NaN/Inf where the derivative is finite, or does
        not match; the message names the activation and the first bad point.
    """
    act = _activations.get_activation(activation)
    number(rtol, "rtol", minimum=0)
    number(atol, "atol", minimum=0)
    if a is not None:
        a = np.asarray(real_array(a, "a")[0])
    with jax.enable_x64(True):
        pts = np.linspace(-8.0, 8.0, 401) if a is None else np.asarray(a, np.float64).ravel()
        pts = jnp.asarray(np.concatenate([pts, [0.0, 1.0, -1.0]]) if a is None else pts)
        value = act.phi(pts)
        ref = jax.vmap(jax.grad(lambda z: act.phi(z)))(pts)
        mine = act.dphi(pts)
        if getattr(mine, "shape", None) != pts.shape:
            raise GradientCheckError(
                f"activation {act.name!r}: dphi(a) must have the shape of a {pts.shape}, got "
                f"{getattr(mine, 'shape', type(mine).__name__)}"
            )
        value, ref, mine, pts = (np.asarray(v, np.float64) for v in (value, ref, mine, pts))
    keep = np.isfinite(value) & np.isfinite(ref)
    bad = keep & ~np.isfinite(mine)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GradientCheckError(
            f"activation {act.name!r}: dphi gives {mine[i]} at a = {pts[i]:.6g}, where "
            f"jax.grad(phi) is {ref[i]:.6g} ({int(bad.sum())} non-finite point(s))"
        )
    diff = np.abs(mine - ref)
    wrong = keep & (diff > atol + rtol * np.abs(ref))
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise GradientCheckError(
            f"activation {act.name!r}: dphi({pts[i]:.6g}) = {mine[i]:.10g} but jax.grad(phi) "
            f"gives {ref[i]:.10g} ({int(wrong.sum())} of {int(keep.sum())} points differ)"
        )
    return float(diff[keep].max()) if keep.any() else 0.0


def _loss_points(loss: Loss, d: int, rng: np.random.Generator):
    """Default ``(phi, y, a)`` for :func:`check_loss`: 64 samples of the kind the loss takes
    (targets of ``loss.targets``, outputs in ``(0, 1)`` for ``"unit_interval"``), with exact
    0/1 and one-hot targets among them, and pre-activations up to ``±30`` (saturated units)."""
    N = 64
    a = rng.normal(0, 3, (N, d))
    a[:4] = np.array([30.0, -30.0, 12.0, -12.0])[:, None]
    phi = 1 / (1 + np.exp(-a)) if loss.outputs == "unit_interval" else rng.normal(0, 2, (N, d))
    if loss.targets == "probabilities":
        y = rng.uniform(0, 1, (N, d))
        y[: N // 4] = rng.integers(0, 2, (N // 4, d))
    elif loss.targets == "distribution":
        e = np.exp(rng.normal(0, 1, (N, d)))
        y = e / e.sum(-1, keepdims=True)
        y[: N // 4] = np.eye(d)[rng.integers(0, d, N // 4)]
    else:
        y = rng.normal(0, 1, (N, d))
    return phi, y, a


def _first_bad(name: str, what: str, mine, ref, keep, rtol, atol, at) -> float:
    """Raises naming the first point where ``mine`` is non-finite or differs from ``ref``;
    returns the largest difference over ``keep`` (rows where the reference is finite)."""
    keep = keep[:, None] & np.isfinite(ref)
    bad = keep & ~np.isfinite(mine)
    diff = np.where(keep, np.abs(np.nan_to_num(mine) - np.nan_to_num(ref)), 0.0)
    wrong = keep & np.isfinite(mine) & (diff > atol + rtol * np.abs(np.nan_to_num(ref)))
    for mask, kind in ((bad, "is not finite"), (wrong, "differs")):
        if mask.any():
            i, k = (int(v) for v in np.argwhere(mask)[0])
            raise GradientCheckError(
                f"loss {name!r}: {what} {kind} at sample {i}, output {k} ({at(i)}): "
                f"{mine[i, k]:.10g}, jax.grad gives {ref[i, k]:.10g} ({int(mask.sum())} of "
                f"{int(keep.sum())} entries)")
    return float(diff.max()) if diff.size else 0.0


def check_loss(
    loss: str | Loss,
    phi=None,
    y=None,
    *,
    d: int = 3,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> float:
    """Checks a loss's hand-written derivatives against ``jax.grad`` of its function, in float64.

    ``loss.dell(φ, y)`` against ``jax.grad`` of ``Σ_i loss.ell(φ_i, y_i)`` with respect to ``φ``;
    with a fused form also ``fused.delta(a, y)`` against ``jax.grad`` of ``fused.ell`` with
    respect to ``a``, and ``fused.ell(a, y)`` against ``ell(φ(a), y)`` (the same loss).

    Args:
      loss: a registered name or a :class:`~bpjax.Loss`.
      phi: outputs ``(N, d)`` to check at; default 64 random rows of the kind the loss takes
        (in ``(0, 1)`` for ``outputs="unit_interval"``). Points where ``ell`` or its autodiff
        derivative is not finite are skipped.
      y: targets ``(N, d)``; default random targets of ``loss.targets``' kind, exact 0/1 and
        one-hot rows among them.
      d: the number of outputs of the default points (at least 2 for ``"distribution"``).
      rtol, atol: an entry passes when ``|mine − grad| ≤ atol + rtol·|grad|``.

    Returns:
      The largest absolute difference.

    Raises:
      GradientCheckError: a derivative that is not finite where the reference is, or that
        differs; the message names the loss, the derivative and the first bad entry.
    """
    loss = get_loss(loss)
    number(rtol, "rtol", minimum=0)
    number(atol, "atol", minimum=0)
    number(d, "d", integer=True, minimum=2 if loss.targets == "distribution" else 1)
    rng = np.random.default_rng(0)
    phi0, y0, a = _loss_points(loss, int(d), rng)
    phi = phi0 if phi is None else np.asarray(real_array(phi, "phi")[0], np.float64)
    y = y0 if y is None else np.asarray(real_array(y, "y")[0], np.float64)
    if phi.ndim != 2 or y.shape != phi.shape:
        raise ValueError(f"phi and y must have one shape (N, d), got {phi.shape} and {y.shape}")
    at = lambda i: f"φ = {np.array2string(phi[i], precision=4)}, y = {y[i]}"  # noqa: E731
    with jax.enable_x64(True):
        def grad_of(f, z, t):  # rows are independent: ∂/∂z of Σ_i ℓ_i is ∂ℓ_i/∂z_i
            return np.asarray(jax.grad(lambda v: jnp.sum(f(v, t)))(z), np.float64)

        value = np.asarray(loss.ell(jnp.asarray(phi), jnp.asarray(y)), np.float64)
        if value.shape != phi.shape[:1]:
            raise GradientCheckError(
                f"loss {loss.name!r}: ell(phi, y) must sum over the outputs and return shape "
                f"{phi.shape[:1]} for phi of shape {phi.shape}, got {value.shape}")
        ref = grad_of(loss.ell, jnp.asarray(phi), jnp.asarray(y))
        mine = np.asarray(loss.dell(jnp.asarray(phi), jnp.asarray(y)), np.float64)
        if mine.shape != phi.shape:
            raise GradientCheckError(f"loss {loss.name!r}: dell(phi, y) must have the shape of "
                                     f"phi {phi.shape}, got {mine.shape}")
        worst = _first_bad(loss.name, "dell (∂ℓ/∂φ)", mine, ref, np.isfinite(value),
                           rtol, atol, at)
        if loss.fused is None or phi is not phi0:
            return worst
        f = loss.fused
        y_a = jnp.asarray(y)
        value_a = np.asarray(f.ell(jnp.asarray(a), y_a), np.float64)
        ref_a = grad_of(f.ell, jnp.asarray(a), y_a)
        mine_a = np.asarray(f.delta(jnp.asarray(a), y_a), np.float64)
        phi_a = np.asarray(f.activation.phi(jnp.asarray(a)), np.float64)
        via_phi = np.asarray(loss.ell(jnp.asarray(phi_a), y_a), np.float64)
    at_a = lambda i: f"a = {np.array2string(a[i], precision=4)}, y = {y[i]}"  # noqa: E731
    worst = max(worst, _first_bad(loss.name, "fused delta (∂ℓ/∂a)", mine_a, ref_a,
                                  np.isfinite(value_a), rtol, atol, at_a))
    moderate = np.all(np.abs(a) < 8, axis=-1)  # where the φ-form is accurate too
    same = np.abs(value_a - via_phi) <= atol + rtol * np.abs(via_phi)
    if not np.all(same[moderate]):
        i = int(np.flatnonzero(moderate & ~same)[0])
        raise GradientCheckError(
            f"loss {loss.name!r}: fused ell(a, y) = {value_a[i]:.10g} but ell(φ(a), y) = "
            f"{via_phi[i]:.10g} at sample {i} ({at_a(i)}): the two forms are not one loss")
    return worst
