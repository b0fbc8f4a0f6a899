"""optax optimizers beyond plain GradientTransformations: L-BFGS and other line searches fed
by the hand-written gradients, optimizers that need the loss value, optax.MultiSteps, and a
clear error for the rest."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax as bp
from conftest import random_data, random_params, reference_loss

NET = bp.Network(2, [bp.Layer(4, "tanh"), bp.Layer(1, "identity")])
PARAMS = random_params(NET, 0)
X, Y = random_data(NET, 8, 0)
LBFGS = optax.lbfgs()


def reference_run(optimizer, steps, params=PARAMS):
    """The same optimizer driven by jax.value_and_grad of an independent loss, as optax says."""
    fn = lambda p: reference_loss(NET, p, X, Y)

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(fn)(params)
        updates, state = optimizer.update(grad, state, params, value=value, grad=grad,
                                          value_fn=fn)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


def test_full_batch_lbfgs_is_optax_lbfgs_with_the_hand_written_gradients():
    result = bp.fit(NET, PARAMS, X, Y, epochs=6, batch_size=None, optimizer=LBFGS)
    ref = reference_run(LBFGS, 6)
    chex.assert_trees_all_close(result.params, ref, rtol=1e-9, atol=1e-11)
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_lbfgs_keeps_clamped_weights_and_resumes(tmp_path):
    params, frozen = bp.clamp(NET, PARAMS, {(1, 0, 1): 0.5, (2, 2, 1): -1.0})
    kw = dict(batch_size=None, optimizer=LBFGS, frozen=frozen)
    result = bp.fit(NET, params, X, Y, epochs=4, **kw)
    for w, w0, m in zip(result.params, params, frozen):
        np.testing.assert_array_equal(np.asarray(w)[np.asarray(m)], np.asarray(w0)[np.asarray(m)])
    assert np.all(np.diff(np.asarray(result.losses)) <= 0)
    bp.save(tmp_path / "lbfgs.npz", NET, result)
    resumed = bp.fit(NET, bp.load(tmp_path / "lbfgs.npz", optimizer=LBFGS), X, Y, epochs=2, **kw)
    whole = bp.fit(NET, params, X, Y, epochs=6, **kw)
    chex.assert_trees_all_close(resumed.params, whole.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_line_search_needs_the_full_batch(batch_size):
    with pytest.raises(ValueError, match=r"this optimizer searches along a line .* "
                                         rf"batch_size=None \(full batch\), got batch_size="
                                         rf"{batch_size}"):
        bp.fit(NET, PARAMS, X, Y, epochs=1, batch_size=batch_size, optimizer=LBFGS)


def test_an_optimizer_that_needs_the_loss_value():
    polyak = optax.polyak_sgd(max_learning_rate=0.5)
    result = bp.fit(NET, PARAMS, X, Y, epochs=3, batch_size=None, optimizer=polyak)
    chex.assert_trees_all_close(result.params, reference_run(polyak, 3), rtol=1e-10, atol=1e-12)
    minibatch = bp.fit(NET, PARAMS, X, Y, epochs=2, batch_size=3, optimizer=polyak)
    assert np.all(np.isfinite(minibatch.losses)) and minibatch.epochs_run == 2


def test_multisteps_averages_k_minibatch_gradients():
    multi = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=2)
    # two minibatches of 2 averaged: half a step along G of the batch of 4 they make
    a = bp.fit(NET, PARAMS, X, Y, learning_rate=0.2, epochs=3, batch_size=2, optimizer=multi)
    b = bp.fit(NET, PARAMS, X, Y, learning_rate=0.1, epochs=3, batch_size=4)
    # optax's MultiSteps accumulates the gradients in float32, whatever the params
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-8)
    from conftest import count_compiles  # the same MultiSteps object compiles once
    with count_compiles() as compiles:
        bp.fit(NET, PARAMS, X, Y, learning_rate=0.3, epochs=3, batch_size=2, optimizer=multi)
    assert compiles == []


def test_sweep_with_lbfgs_equals_single_fits():
    stacked = jax.tree.map(lambda *w: jnp.stack(w), PARAMS, random_params(NET, 1))
    many = bp.sweep(NET, stacked, X, Y, epochs=3, batch_size=None, optimizer=LBFGS)
    for m, p in enumerate((PARAMS, random_params(NET, 1))):
        one = bp.fit(NET, p, X, Y, epochs=3, batch_size=None, optimizer=LBFGS)
        chex.assert_trees_all_close(jax.tree.map(lambda v, m=m: v[m], many.params), one.params,
                                    rtol=1e-10, atol=1e-12)


def test_an_optimizer_bpjax_cannot_drive_is_a_clear_error():
    needs_more = optax.GradientTransformationExtraArgs(
        lambda p: optax.EmptyState(), lambda u, s, p=None, *, hessian: (u, s))
    with pytest.raises(TypeError, match=r"bpjax cannot drive this optimizer: its update fails "
                                        r"when given what bpjax gives .*hessian"):
        bp.fit(NET, PARAMS, X, Y, epochs=1, batch_size=None, optimizer=needs_more)
    with pytest.raises(TypeError, match=r"optimizer must be an optax.GradientTransformation "
                                        r"\(e.g. optax.adam\(1.0\)\) or an optax.MultiSteps"):
        bp.fit(NET, PARAMS, X, Y, epochs=1, optimizer=optax.adam)
