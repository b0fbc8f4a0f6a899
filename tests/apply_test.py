"""bp.apply: the forward value with the hand-written backward pass as its custom VJP.

Every cotangent is checked against ``jax.vjp`` of the independent plain-JAX forward pass in
``conftest.py`` (``reference_forward``), in float64, with random cotangents.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax as bp
from conftest import DAG_NETS, assert_close_to_reference, networks, random_params, reference_forward

HERE = Path(__file__).resolve().parent


def random_inputs(net, N, seed, dtype=jnp.float64):
    """``X (N, D)`` and a cotangent ``ḡ = ∂ℓ/∂φ^L`` ``(N, d)``, both normal."""
    kx, kg = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(kx, (N, net.inputs), dtype),
            jax.random.normal(kg, (N, net.outputs), dtype))


def apply_vjp(net, params, X, g):
    out, vjp = jax.vjp(lambda p, x: bp.apply(net, p, x), params, X)
    return out, *vjp(g)


def reference_vjp(net, params, X, g):
    out, vjp = jax.vjp(lambda p, x: reference_forward(net, p, x), params, X)
    return out, *vjp(g)


@jax.jit(static_argnums=0)
def both_vjps(net, params, X, g):
    """bp.apply's and the reference's ``(φ, ∂ℓ/∂θ, ∂ℓ/∂X)``, compiled together: one compile."""
    return apply_vjp(net, params, X, g), reference_vjp(net, params, X, g)


def assert_cotangents_match(net, params, X, g, rtol=1e-10):
    (out, gp, gx), (ref_out, ref_p, ref_x) = both_vjps(net, params, X, g)
    np.testing.assert_allclose(out, ref_out, rtol=1e-13, atol=1e-13)
    assert_close_to_reference(gp, ref_p, rtol)
    assert_close_to_reference([gx], [ref_x], rtol)
    for l, c in enumerate(gp, start=1):  # structural zeros: exactly 0
        assert np.all(np.asarray(c)[~net.structure(l)] == 0), f"layer {l}"
    return gp, gx


@settings(max_examples=8)
@given(net=networks(max_depth=3, max_width=6, dag=True, adjacency=True),
       N=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**16))
def test_cotangents_match_jax_vjp_of_the_reference(net, N, seed):
    params = random_params(net, seed)
    X, g = random_inputs(net, N, seed)
    gp, gx = assert_cotangents_match(net, params, X, g)
    assert all(c.dtype == jnp.float64 for c in (*gp, gx))


@pytest.mark.parametrize("name", sorted(DAG_NETS))
def test_cotangents_on_explicit_dags(name):
    net = DAG_NETS[name]  # x read by several layers, masks, no bias, a dead layer
    params = random_params(net, 21)
    X, g = random_inputs(net, 4, 21)
    assert_cotangents_match(net, params, X, g)


def test_input_cotangent_sums_over_every_layer_that_reads_x():
    # "x_to_output": layer 1 and the output both read x. In numpy:
    #   ∂ℓ/∂x = δ^1 (w^1_{1:})ᵀ + δ^2 (w^2 rows of x)ᵀ,   δ^2 = ḡ (identity),
    #   δ^1 = (δ^2 (w^2 rows of φ^1)ᵀ) ⊙ ∂φ^1/∂a^1
    net = DAG_NETS["x_to_output"]
    params = random_params(net, 22)
    X, g = random_inputs(net, 4, 22)
    w1, w2 = (np.asarray(w) for w in params)
    a1 = np.asarray(bp.forward_trace(net, params, X).a[1])
    s = 1 / (1 + np.exp(-a1))
    dphi = np.stack([1 - np.tanh(a1[:, 0]) ** 2, s[:, 1], 2 * a1[:, 2], s[:, 3] * (1 - s[:, 3])],
                    axis=1)  # tanh, softplus, square, logistic
    delta2 = np.asarray(g)
    delta1 = delta2 @ w2[4:].T * dphi
    expected = delta1 @ w1[1:].T + delta2 @ w2[1:4].T
    (_, _, gx), _ = both_vjps(net, params, X, g)  # compiled for the test above
    np.testing.assert_allclose(gx, expected, rtol=1e-12)


# --- the custom VJP is what runs -------------------------------------------------------------

NET = bp.Network(3, [bp.Layer(4, ("tanh", "logistic", "relu", "square")),
                     bp.Layer(2, "identity", inputs=(0, 1))])
PARAMS = random_params(NET, 3)
X, G = random_inputs(NET, 5, 3)


def huber(r, c=0.5):
    return jnp.where(jnp.abs(r) <= c, 0.5 * r * r, c * (jnp.abs(r) - 0.5 * c))


def loss_apply(params, X):
    return jnp.mean(huber(bp.apply(NET, params, X) - 0.3))


def loss_forward(params, X):
    return jnp.mean(huber(bp.forward(NET, params, X) - 0.3))


def loss_reference(params, X):
    return jnp.mean(huber(reference_forward(NET, params, X) - 0.3))


def test_jaxprs_hold_the_custom_vjp_and_the_backward_pass():
    value = str(jax.make_jaxpr(loss_apply)(PARAMS, X))
    assert "custom_vjp_call" in value and "bwd=backward_pass" in value
    grad = str(jax.make_jaxpr(jax.grad(loss_apply))(PARAMS, X))
    # JAX inlines a custom VJP's rule into the gradient's jaxpr; the rule is a named jit
    assert "name=backward_pass" in grad
    plain = str(jax.make_jaxpr(jax.grad(loss_forward))(PARAMS, X))
    assert "backward_pass" not in plain and "custom_vjp_call" not in plain


def test_the_gradient_is_the_hand_written_derivative():
    # an activation JAX cannot differentiate (stop_gradient), with its derivative by hand:
    # jax.grad through bp.forward sees 0, through bp.apply the delta rule uses dphi
    opaque = bp.Activation("opaque_tanh", lambda a: jax.lax.stop_gradient(jnp.tanh(a)),
                           lambda a: 1 - jnp.tanh(a) ** 2)
    net = bp.Network(3, [bp.Layer(4, opaque), bp.Layer(2, "identity")])
    same = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    params = random_params(net, 4)

    @jax.jit
    def grads(params, X, g):
        _, gp, gx = apply_vjp(net, params, X, g)
        _, ref_p, ref_x = reference_vjp(same, params, X, g)
        _, plain = jax.vjp(lambda p: bp.forward(net, p, X), params)
        return gp, gx, ref_p, ref_x, plain(g)[0]

    gp, gx, ref_p, ref_x, plain = grads(params, X, G)
    assert_close_to_reference(gp, ref_p)
    assert_close_to_reference([gx], [ref_x])
    assert np.all(np.asarray(plain[0]) == 0)


# --- transformations -------------------------------------------------------------------------

GRAD = jax.grad(loss_apply, argnums=(0, 1))
REF_GRAD = jax.grad(loss_reference, argnums=(0, 1))


def assert_both_close(got, ref, rtol=1e-10):
    assert_close_to_reference(got[0], ref[0], rtol)
    assert_close_to_reference([got[1]], [ref[1]], rtol)


def test_jit_equals_eager_and_the_reference():
    eager = GRAD(PARAMS, X)  # jax.grad outside jit: bp.apply's own jitted pieces
    jitted, ref = jax.jit(lambda p, x: (GRAD(p, x), REF_GRAD(p, x)))(PARAMS, X)
    chex.assert_trees_all_close(jitted, eager, rtol=1e-13, atol=1e-15)
    assert_both_close(eager, ref)


@jax.jit
def vmapped(stacked, batches, x_per_model):
    over_params = jax.vmap(GRAD, in_axes=(0, None))
    over_X = jax.vmap(GRAD, in_axes=(None, 0))
    one_x = jax.vmap(GRAD, in_axes=(0, 0))  # one x (D,) per model
    return (over_params(stacked, X), over_X(PARAMS, batches), one_x(stacked, x_per_model),
            jax.vmap(REF_GRAD, in_axes=(0, None))(stacked, X),
            jax.vmap(REF_GRAD, in_axes=(None, 0))(PARAMS, batches),
            jax.vmap(lambda p, x: REF_GRAD(p, x[None]), in_axes=(0, 0))(stacked, x_per_model))


def test_vmap_over_params_and_over_inputs():
    stacked = tuple(jnp.stack([w, 0.5 * w, -w]) for w in PARAMS)  # 3 models
    batches = jnp.stack([X, 2 * X])  # 2 datasets
    out = vmapped(stacked, batches, X[:3])
    for got, ref in zip(out[:3], out[3:]):
        assert_both_close(got, (ref[0], ref[1].reshape(got[1].shape)))
    assert out[2][1].shape == (3, NET.inputs)  # ∂ℓ/∂x of one x per model


def test_vmap_over_single_samples_gives_per_sample_input_gradients():
    @jax.jit
    def per_sample(X):
        per = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(bp.apply(NET, PARAMS, x)))))(X)
        ref = jax.grad(lambda x: jnp.sum(jnp.sin(reference_forward(NET, PARAMS, x))))(X)
        return per, ref

    per, ref = per_sample(X)
    assert per.shape == X.shape
    assert_close_to_reference([per], [ref])


def penalised(loss):
    """``∂/∂(θ, x)`` of ``ℓ + λ‖∂ℓ/∂x‖²`` (a gradient penalty): reverse over reverse."""
    def f(params, X):
        gx = jax.grad(loss, argnums=1)(params, X)
        return loss(params, X) + 0.1 * jnp.sum(gx**2)
    return jax.grad(f, argnums=(0, 1))


def hvp(loss):
    """``∂²ℓ/∂θ² v`` for ``v`` of ones, as ``∂/∂θ (∂ℓ/∂θ · v)``: reverse over reverse."""
    def f(params, X):
        dot = lambda p: sum(jnp.sum(g) for g in jax.grad(loss)(p, X))
        return jax.grad(dot)(params)
    return f


def test_reverse_over_reverse():
    got, ref, got_hvp, ref_hvp = jax.jit(lambda p, x: (
        penalised(loss_apply)(p, x), penalised(loss_reference)(p, x),
        hvp(loss_apply)(p, x), hvp(loss_reference)(p, x)))(PARAMS, X)
    assert_both_close(got, ref)
    assert_close_to_reference(got_hvp, ref_hvp)


def test_forward_stays_plain_jax_and_apply_is_reverse_mode():
    @jax.jit
    def jacobians(x):
        f = lambda x: bp.forward(NET, PARAMS, x)
        ref = lambda x: reference_forward(NET, PARAMS, x[None])[0]
        return (jax.jacfwd(f)(x), jax.jacfwd(ref)(x),
                jax.hessian(lambda x: jnp.sum(f(x) ** 2))(x),
                jax.hessian(lambda x: jnp.sum(ref(x) ** 2))(x),
                jax.jacrev(lambda x: bp.apply(NET, PARAMS, x))(x))  # through the custom VJP

    jac, ref_jac, hess, ref_hess, jac_rev = jacobians(X[0])
    np.testing.assert_allclose(jac, ref_jac, rtol=1e-12)
    np.testing.assert_allclose(hess, ref_hess, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jac_rev, ref_jac, rtol=1e-12)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(lambda x: bp.apply(NET, PARAMS, x))(X[0])


# --- shapes, dtypes, values ------------------------------------------------------------------


def test_value_equals_forward_for_a_batch_and_one_sample():
    chex.assert_trees_all_close(bp.apply(NET, PARAMS, X), bp.forward(NET, PARAMS, X),
                                rtol=0, atol=0)
    one = bp.apply(NET, PARAMS, X[1])
    assert one.shape == (NET.outputs,)
    np.testing.assert_array_equal(one, bp.forward(NET, PARAMS, X[1]))
    # one x (D,): its cotangents are those of the batch of one
    _, gp, gx = jax.jit(apply_vjp, static_argnums=0)(NET, PARAMS, X[1], G[1])
    _, (_, ref_p, ref_x) = both_vjps(NET, PARAMS, X[1:2], G[1:2])
    assert gx.shape == (NET.inputs,)
    assert_close_to_reference(gp, ref_p)
    assert_close_to_reference([gx], [ref_x[0]])


def test_float32_stays_float32():
    p32 = tuple(w.astype(jnp.float32) for w in PARAMS)
    (out, gp, gx), _ = both_vjps(NET, p32, X.astype(jnp.float32), G.astype(jnp.float32))
    assert out.dtype == gx.dtype == jnp.float32 and all(c.dtype == jnp.float32 for c in gp)
    _, (_, ref_p, ref_x) = both_vjps(NET, PARAMS, X, G)
    for c, r in zip((*gp, gx), (*ref_p, ref_x)):
        np.testing.assert_allclose(c, r, rtol=1e-4, atol=1e-5 * float(jnp.abs(r).max()))
    # float32 weights, float64 inputs: computed in float64, each cotangent in its own dtype
    out, gp, gx = jax.jit(apply_vjp, static_argnums=0)(NET, p32, X, G)
    assert out.dtype == gx.dtype == jnp.float64 and all(c.dtype == jnp.float32 for c in gp)


@pytest.mark.parametrize("X_bad, message", [
    (np.ones((5, 4)), r"X must have shape \(N, D\) = \(N, 3\)"),
    (np.ones((0, 3)), "N = 0 samples"),
    (np.array([["a", "b", "c"]]), "X must be a numeric array"),
])
def test_bad_inputs_are_checked_as_by_forward(X_bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bp.apply(NET, PARAMS, X_bad)
    with pytest.raises((ValueError, TypeError), match=message):
        jax.grad(lambda p: jnp.sum(bp.apply(NET, p, X_bad)))(PARAMS)


def test_bad_params_are_checked():
    with pytest.raises(ValueError, match=r"params\[1\] \(layer 2\) has shape"):
        bp.apply(NET, (PARAMS[0], PARAMS[1][:-1]), X)
    with pytest.raises(ValueError, match="params has 1 layers, expected L = 2"):
        bp.apply(NET, PARAMS[:1], X)


# --- on 4 devices, in a subprocess (the device count is fixed when JAX starts) ---------------


@pytest.fixture(scope="module")
def sharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, str(HERE / "apply_sharded_checks.py")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=HERE.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["device_count"] == 4
    return results


@pytest.mark.parametrize("check", ["jit_on_an_auto_mesh", "jit_on_an_explicit_mesh",
                                   "grad_of_shard_map_with_psum"])
def test_sharded_gradients_match_one_device(sharded, check):
    r = sharded[check]
    assert "error" not in r, r.get("error")
    assert r["params"] < 1e-13 and r["inputs"] < 1e-13  # float64, sums in another order
    assert r["structural_zeros"]
    assert r["inputs_spec"] == ["data"]  # ∂ℓ/∂X split like X, along the samples
    assert all(s == [] for s in r["params_spec"])  # ∂ℓ/∂θ replicated


def test_sharded_backward_pass_all_reduces_and_never_gathers_the_data(sharded):
    r = sharded["jit_on_an_auto_mesh"]
    assert r["all_reduces"] >= 1 and r["all_gathers"] == 0
