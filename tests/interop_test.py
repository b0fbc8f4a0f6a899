"""bpjax inside Equinox and Flax NNX models (examples/equinox_layer.py, flax_nnx_layer.py).

For each: ``jax.grad`` of the model runs bpjax's custom VJP (it is in the jaxprs), its
gradients for every weight — the framework's own layer and the bpjax layer — equal those of
the same model with the plain-JAX reference forward pass of ``conftest.py`` in its place
(float64), and a few optax steps reduce the loss.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import assert_close_to_reference, reference_forward

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def huber(phi, Y):
    return jnp.mean(optax.huber_loss(phi, Y, delta=0.5))


def assert_runs_the_custom_vjp(loss_fn, *args):
    assert "custom_vjp_call" in str(jax.make_jaxpr(loss_fn)(*args))
    assert "name=backward_pass" in str(jax.make_jaxpr(jax.grad(loss_fn))(*args))


def assert_grads_match(grads, ref):
    leaves, ref_leaves = jax.tree.leaves(grads), jax.tree.leaves(ref)
    assert len(leaves) == len(ref_leaves) >= 4  # the framework's layer and bpjax's
    assert all(g.dtype == jnp.float64 for g in leaves)
    assert_close_to_reference(leaves, ref_leaves, rtol=1e-10)


def test_equinox_model_with_a_bpjax_layer():
    eqx = pytest.importorskip("equinox")
    import equinox_layer as ex

    X, Y = ex.dataset(32, jnp.float64)
    model = ex.Model(jax.random.key(0), dtype=jnp.float64)
    assert model.body.params[0].dtype == jnp.float64

    def reference_loss(model, X, Y):
        H = jnp.tanh(jax.vmap(model.encoder)(X))
        return huber(reference_forward(model.body.net, model.body.params, H), Y)

    params, static = eqx.partition(model, eqx.is_array)
    assert_runs_the_custom_vjp(lambda p: ex.loss(eqx.combine(p, static), X, Y), params)
    grads, ref = eqx.filter_jit(lambda m: (eqx.filter_grad(ex.loss)(m, X, Y),
                                           eqx.filter_grad(reference_loss)(m, X, Y)))(model)
    assert_grads_match(grads, ref)
    _, losses = ex.train(model, X, Y, steps=5)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_flax_nnx_model_with_a_bpjax_layer():
    nnx = pytest.importorskip("flax.nnx")
    import flax_nnx_layer as ex

    X, Y = ex.dataset(32, jnp.float64)
    model = ex.Model(rngs=nnx.Rngs(0), dtype=jnp.float64)
    graphdef, params = nnx.split(model, nnx.Param)

    def reference_loss(params, X, Y):
        m = nnx.merge(graphdef, params)
        H = jnp.tanh(m.encoder(X))
        return huber(reference_forward(m.body.net, tuple(w[...] for w in m.body.w), H), Y)

    assert_runs_the_custom_vjp(lambda p: ex.loss_of_params(graphdef, p, X, Y), params)
    grads, ref = jax.jit(lambda p: (jax.grad(ex.loss_of_params, argnums=1)(graphdef, p, X, Y),
                                    jax.grad(reference_loss)(p, X, Y)))(params)
    assert_grads_match(grads, ref)
    model, losses = ex.train(model, X, Y, steps=5)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert float(ex.loss(model, X, Y)) < losses[0]  # nnx.update wrote the weights back
