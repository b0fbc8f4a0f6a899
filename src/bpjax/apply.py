"""The network as a JAX function whose VJP is the paper's backward pass: :func:`apply`.

``apply(net, params, X)`` is ``φ_θ(X)``, the value of :func:`bpjax.forward`, registered with
``jax.custom_vjp``: when ``jax.grad`` (``jax.vjp``, an optax loop, an Equinox or Flax model)
differentiates a program that calls it, JAX does not differentiate the forward pass but runs
the hand-written backward pass of :mod:`bpjax.backward`, from whatever cotangent
``ḡ = ∂ℓ/∂φ^L`` the rest of the program sends back, for any scalar ``ℓ``:

| paper                                                  | code                                  |
| ------------------------------------------------------ | ------------------------------------- |
| the cotangent of the output, ``∂ℓ/∂φ^L``               | ``g``, shape of ``φ_θ(X)``            |
| (2) ``δ^l = ∂ℓ/∂φ^l ⊙ ∂φ^l/∂a^l``                      | ``delta_rule``                        |
| (3) ``∂ℓ/∂φ^s = Σ_{l reads s} (δ^l w^{lᵀ})[rows of s]`` | ``delta_rule``                        |
| ``∂ℓ/∂w^l = [1 ‖ φ_in]ᵀ δ^l``                           | ``weight_gradients``                  |
| ``∂ℓ/∂x = δ^0``: (3) once more, to layer 0 (``φ^0 = x``) | ``delta_rule(..., inputs=True)[0]``   |

In a DAG ``∂ℓ/∂x`` sums the contributions of every layer that reads ``x``. Structural zeros
(``bias=False``, absent connections) get a cotangent of exactly 0.

**When to use which.** Both give the same value.

* :func:`apply` for reverse mode: ``jax.grad``, ``jax.vjp``, ``jax.jacrev`` of any loss of the
  network's output, in your own training loop or inside a larger model. The gradient is the
  paper's backward pass. The backward pass is itself JAX code, so ``jax.grad`` of a function
  of ``jax.grad`` (reverse-over-reverse, e.g. a penalty on ``∂ℓ/∂x``) works: JAX
  differentiates the hand-written backward pass. Forward mode does not: ``jax.jvp``,
  ``jax.jacfwd`` and ``jax.hessian`` raise on a ``custom_vjp`` function.
* :func:`bpjax.forward` is plain JAX: forward mode, ``jax.jacfwd``, ``jax.hessian`` and any
  transformation work through it, with JAX's own derivatives.

Both work under ``jax.jit`` and ``jax.vmap`` (over ``params``, ``X`` or both) and on arrays
sharded over a device mesh: ``Auto`` axes (as ``fit(..., mesh=)`` uses them), ``Explicit``
axes, and inside ``jax.shard_map`` (see :func:`backward_pass`). The argument checks run once,
when the call is traced (or at each eager call), outside the function that carries the
custom VJP.

No automatic differentiation is used here: :mod:`bpjax.backward` computes every derivative,
equations (2)-(4); ``jax.custom_vjp`` only registers them (:func:`backward_pass`) as the
derivative JAX returns.
"""

from __future__ import annotations

import functools

import jax
from jax.sharding import AxisType

from bpjax.backward import delta_rule, weight_gradients
from bpjax.forward import prepare, propagate
from bpjax.network import Network, check_network
from bpjax.params import Params, structural

__all__ = ["apply"]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def phi_theta(net: Network, params: Params, X: jax.Array) -> jax.Array:
    """``φ_θ(X)`` for prepared ``params`` and ``X (N, D)``, differentiated by hand."""
    return propagate(net, structural(net, params), X).phi[-1]


def forward_pass(net: Network, params: Params, X: jax.Array):
    """The primal ``φ^L`` and the residuals of the backward pass: structural weights, trace."""
    params = structural(net, params)
    tr = propagate(net, params, X)
    return tr.phi[-1], (params, tr)


def cotangents(net: Network, residuals, g: jax.Array) -> tuple[Params, jax.Array]:
    """``(∂ℓ/∂θ, ∂ℓ/∂X)`` from ``g = ∂ℓ/∂φ^L`` ``(N, d)``: equations (2)-(3), then the weights."""
    params, tr = residuals
    delta = delta_rule(net, params, tr, g, bias_row=True, inputs=True)
    return weight_gradients(net, tr, delta), delta[0]


def explicit_axes(*arrays) -> tuple[str, ...]:
    """The ``Explicit`` axes of the mesh that ``arrays`` are typed on (none off a mesh)."""
    for v in arrays:
        mesh = jax.typeof(v).sharding.mesh
        if not mesh.empty:
            return tuple(a for a, t in zip(mesh.axis_names, mesh.axis_types)
                         if t == AxisType.Explicit)
    return ()


def varying_axes(v) -> frozenset:
    """The manual axes of ``jax.shard_map`` over which ``v`` varies (none outside it).

    JAX 0.10 names them ``jax.typeof(v).manual_axis_type.varying``, earlier releases
    ``jax.typeof(v).vma``; a release with neither reads as none (then ``shard_map`` with
    ``check_vma=True`` reports the mismatch itself).
    """
    aval = jax.typeof(v)
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()))


def typed_like(ct: jax.Array, v: jax.Array) -> jax.Array:
    """``ct`` with the manual-axis type of its primal ``v``, as a custom VJP must return it.

    Inside ``shard_map`` an invariant ``v`` (the weights, replicated) used with varying data
    gets a varying cotangent, one share per device; their sum over those axes, ``psum``, is
    the cotangent (the transpose of JAX's implicit broadcast of ``v``).
    """
    extra, missing = varying_axes(ct) - varying_axes(v), varying_axes(v) - varying_axes(ct)
    if extra:
        ct = jax.lax.psum(ct, tuple(sorted(extra)))
    if missing:
        ct = jax.lax.pcast(ct, tuple(sorted(missing)), to="varying")
    return ct


@functools.partial(jax.jit, static_argnums=0)
def backward_pass(net: Network, residuals, g: jax.Array) -> tuple[Params, jax.Array]:
    """The custom VJP's rule: :func:`cotangents`, typed like the primal ``(params, X)``.

    On a mesh with ``Explicit`` axes (``jax.make_mesh``'s default) the sums over a sharded
    sample axis, ``φ_inᵀ δ``, need their result's sharding: the rule runs with those axes
    ``Auto`` and gives back the primal's shardings. A named ``jit``, so that the backward pass
    shows as ``jit[name=backward_pass]`` in the jaxpr of a gradient through :func:`apply`
    (JAX inlines a custom VJP's rule there).
    """
    params, tr = residuals
    primal = (params, tr.phi[0])
    axes = explicit_axes(*jax.tree.leaves(primal))
    if axes:
        shardings = jax.tree.map(lambda v: jax.typeof(v).sharding, primal)
        rule = jax.sharding.auto_axes(lambda r, g: cotangents(net, r, g), axes=axes,
                                      out_sharding=shardings)
        cts = rule(residuals, g)
    else:
        cts = cotangents(net, residuals, g)
    return jax.tree.map(typed_like, cts, primal)


phi_theta.defvjp(forward_pass, backward_pass)

_phi_theta_jit = jax.jit(phi_theta, static_argnums=0)


def apply(net: Network, params: Params, X) -> jax.Array:
    """The network's output ``φ_θ(X)``, whose gradient is the hand-written backward pass.

    The same value as :func:`bpjax.forward`. Under ``jax.grad``, ``jax.vjp`` or ``jax.jacrev``
    the cotangent ``∂ℓ/∂φ^L`` that reaches it is propagated by equations (2)-(3) of the paper
    (:mod:`bpjax.backward`), for ``params`` and for ``X``. Reverse mode only: use
    :func:`bpjax.forward` for ``jax.jvp``, ``jax.jacfwd`` or ``jax.hessian``.

    Args:
      net: the network (static: not differentiated).
      params: ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      X: inputs ``(N, D)``, or one ``x`` of shape ``(D,)``.

    Returns:
      ``φ_θ(X)`` of shape ``(N, d)``, or ``(d,)`` for one ``x``; the dtype of the inputs
      (promoted together).

    Example:
      Any loss, differentiated by the paper's backward pass:

      >>> import jax, jax.numpy as jnp, bpjax as bp
      >>> net = bp.Network(2, [bp.Layer(3, "tanh"), bp.Layer(1, "identity")])
      >>> params, X = bp.init(net, jax.random.key(0)), jnp.ones((4, 2))
      >>> grads = jax.grad(lambda p: jnp.sum(jnp.abs(bp.apply(net, p, X))))(params)
      >>> [g.shape for g in grads]
      [(3, 3), (4, 1)]
    """
    check_network(net, "apply")
    params, X2, single = prepare(net, params, X)
    out = _phi_theta_jit(net, params, X2)
    return out[0] if single else out
