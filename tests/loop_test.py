"""The epoch loop's stopping rules: divergence made visible, and a history that always describes
the weights returned (losses, val_losses, epoch, best_epoch), with validation and patience."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax as bp
from conftest import random_data, random_params

MLP = bp.Network(3, [bp.Layer(4, ("tanh", "logistic", "square", "identity")),
                     bp.Layer(3, "tanh"), bp.Layer(2, "identity")])
QUAD = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
PARAMS = random_params(MLP, 0)
X, Y = random_data(MLP, 7, 0)
GROWING = optax.sgd(lambda t: 0.3 * 2.0**t)  # improves for 2 full-batch epochs, diverges at 33


def assert_trees_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def assert_consistent(r, net, X, Y, validation=None, start=0):
    """Everything in ``r`` describes ``r.params``."""
    assert len(r.losses) == r.epochs_run and np.all(np.isfinite(r.losses))
    if validation is not None:
        assert len(r.val_losses) == r.epochs_run and np.all(np.isfinite(r.val_losses))
    assert r.epoch == start + r.best_epoch
    assert all(np.all(np.isfinite(w)) for w in r.params)
    if r.best_epoch:
        np.testing.assert_allclose(bp.loss(net, r.params, X, Y), r.losses[r.best_epoch - 1],
                                   rtol=1e-12)
        if validation is not None:
            np.testing.assert_allclose(bp.loss(net, r.params, *validation),
                                       r.val_losses[r.best_epoch - 1], rtol=1e-12)
    if r.diverged:
        assert r.diverged_epoch == r.epochs_run + 1
    else:
        assert r.diverged_epoch == 0


@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_a_diverged_epoch_is_not_kept(batch_size):
    with pytest.warns(bp.DivergenceWarning) as record:
        r = bp.fit(MLP, PARAMS, X, Y, learning_rate=1e4, epochs=50, batch_size=batch_size)
    assert r.diverged and 1 <= r.diverged_epoch <= 50
    assert r.best_epoch == r.epochs_run == r.diverged_epoch - 1
    assert_consistent(r, MLP, X, Y)
    before = bp.fit(MLP, PARAMS, X, Y, learning_rate=1e4, epochs=r.epochs_run,
                    batch_size=batch_size)
    assert_trees_equal(r.params, before.params)
    np.testing.assert_array_equal(r.losses, before.losses)
    message = str(record[0].message)
    assert f"epoch {r.diverged_epoch} of this call" in message
    assert "learning_rate=1e+04" in message and "smaller learning_rate" in message
    assert "on_divergence='ignore'" in message
    assert record[0].filename == __file__  # points at the caller's line


def test_divergence_in_the_first_epoch_with_validation_on_the_same_data():
    """The issue's case: losses == [inf] but val_losses == [1.35], epoch 1 for epoch-0 weights."""
    Xq, _ = random_data(QUAD, 8, 0)
    Yq = (Xq @ jnp.array([1.0, -2.0]))[:, None] ** 2
    params = random_params(QUAD, 0)
    for patience in (None, 3):
        with pytest.warns(bp.DivergenceWarning, match="epoch 1 of this call.*the initial ones"):
            r = bp.fit(QUAD, params, Xq, Yq, learning_rate=1e3, epochs=5,
                       validation=(Xq, Yq), patience=patience)
        assert r.diverged and r.diverged_epoch == 1
        assert r.losses.shape == r.val_losses.shape == (0,)
        assert r.epoch == r.epochs_run == r.best_epoch == 0
        assert_trees_equal(r.params, params)


def test_divergence_after_improving_with_validation_and_patience():
    validation = (X, Y)
    with pytest.warns(bp.DivergenceWarning, match="weights returned are those after epoch 2"):
        r = bp.fit(MLP, PARAMS, X, Y, epochs=50, batch_size=None, optimizer=GROWING,
                   validation=validation, patience=40)
    assert r.diverged and not r.stopped_early and r.best_epoch == 2 < r.epochs_run
    assert_consistent(r, MLP, X, Y, validation)
    # the weights and optimizer state after epoch 2, and resuming continues from there
    two = bp.fit(MLP, PARAMS, X, Y, epochs=2, batch_size=None, optimizer=GROWING)
    assert_trees_equal(r.params, two.params)
    assert_trees_equal(r.opt_state, two.opt_state)
    again = bp.fit(MLP, r, X, Y, epochs=1, batch_size=None, optimizer=GROWING)
    three = bp.fit(MLP, PARAMS, X, Y, epochs=3, batch_size=None, optimizer=GROWING)
    assert again.epoch == 3
    assert_trees_equal(again.params, three.params)


def test_with_patience_epoch_counts_the_epochs_of_the_best_weights():
    Xv, Yv = X, 0.5 * Y  # the training passes near these targets on its way to Y
    r = bp.fit(MLP, PARAMS, X, Y, learning_rate=0.5, epochs=200, patience=5, validation=(Xv, Yv))
    assert r.stopped_early and 0 < r.best_epoch < r.epochs_run
    assert_consistent(r, MLP, X, Y, (Xv, Yv))
    resumed = bp.fit(MLP, r, X, Y, learning_rate=0.5, epochs=0)
    assert resumed.epoch == r.best_epoch


def test_on_divergence_ignore_and_the_warning_category():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = bp.fit(MLP, PARAMS, X, Y, learning_rate=1e4, epochs=50, on_divergence="ignore")
        assert r.diverged
        bp.fit(MLP, PARAMS, X, Y, learning_rate=0.1, epochs=2)  # no divergence, no warning
        warnings.simplefilter("error", bp.DivergenceWarning)
        with pytest.raises(bp.DivergenceWarning):
            bp.fit(MLP, PARAMS, X, Y, learning_rate=1e4, epochs=50)
    assert issubclass(bp.DivergenceWarning, RuntimeWarning)
    for bad in ("raise", None, True):
        with pytest.raises(ValueError, match=r"on_divergence must be 'warn' or 'ignore', got"):
            bp.fit(MLP, PARAMS, X, Y, learning_rate=0.1, epochs=1, on_divergence=bad)
        with pytest.raises(ValueError, match=r"on_divergence must be 'warn' or 'ignore', got"):
            bp.sweep(MLP, jax.tree.map(lambda w: w[None], PARAMS), X, Y, learning_rate=0.1,
                     epochs=1, on_divergence=bad)


def test_sweep_names_the_models_that_diverged():
    stacked = jax.tree.map(lambda w: jnp.stack([w] * 3), PARAMS)
    etas = jnp.array([0.1, 1e4, 0.2])
    with pytest.warns(bp.DivergenceWarning) as record:
        r = bp.sweep(MLP, stacked, X, Y, learning_rate=etas, epochs=40)
    message = str(record[0].message)
    t = int(r.diverged_epoch[1])
    assert "1 of 3 models diverged" in message and "models [1]" in message
    assert f"epochs [{t}]" in message and "learning_rate [1e+04]" in message
    np.testing.assert_array_equal(r.epochs_run, [40, t - 1, 40])
    assert np.all(np.isnan(r.losses[1, t - 1:])) and np.all(np.isfinite(r.losses[1, :t - 1]))
    assert int(r.epoch[1]) == t - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.sweep(MLP, stacked, X, Y, learning_rate=etas, epochs=40, on_divergence="ignore")


def test_under_jit_a_traced_bad_learning_rate_runs_no_epoch():
    fit = jax.jit(lambda p, eta: bp.fit(MLP, p, X, Y, learning_rate=eta, epochs=3))
    for eta in (-0.1, 0.0, float("nan"), float("inf")):
        r = fit(PARAMS, eta)
        assert int(r.epochs_run) == 0 and int(r.epoch) == 0
        assert np.all(np.isnan(r.losses)) and r.losses.shape == (3,)
        assert_trees_equal(r.params, PARAMS)
    good = fit(PARAMS, 0.1)
    assert int(good.epochs_run) == 3 and np.all(np.isfinite(good.losses))
    # the same under vmap: each model on its own
    many = jax.vmap(lambda eta: bp.fit(MLP, PARAMS, X, Y, learning_rate=eta, epochs=3))(
        jnp.array([0.1, -0.1]))
    np.testing.assert_array_equal(many.epochs_run, [3, 0])


# --- the start of a fit: built without a device call where it can, nothing of the caller's lost


@pytest.mark.parametrize("kwargs", [
    dict(learning_rate=0.3),  # the state from cached constants, no device call
    dict(optimizer=optax.adam(1e-2), batch_size=3),  # Adam's state made in the compiled start
    dict(learning_rate=0.3, validation=(X, Y), patience=2),  # the best loss needs the device
], ids=["sgd", "adam", "patience"])
def test_fit_leaves_the_callers_arrays_alone_and_calls_are_repeatable(kwargs):
    params = tuple(jnp.array(w) for w in PARAMS)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    first = bp.fit(MLP, params, Xj, Yj, epochs=3, **kwargs)
    assert not any(v.is_deleted() for v in (*params, Xj, Yj))
    assert_trees_equal(params, PARAMS)
    again = bp.fit(MLP, params, Xj, Yj, epochs=3, **kwargs)
    assert_trees_equal((first.params, first.opt_state, first.losses),
                       (again.params, again.opt_state, again.losses))


def test_the_optimizer_state_made_in_the_start_is_the_optimizers_init():
    adam = optax.adam(1e-2)
    made = bp.fit(MLP, PARAMS, X, Y, optimizer=adam, batch_size=3, epochs=2)
    given = bp.fit(MLP, PARAMS, X, Y, optimizer=adam, batch_size=3, epochs=2,
                   opt_state=adam.init(PARAMS))
    assert_trees_equal((made.params, made.opt_state, made.losses),
                       (given.params, given.opt_state, given.losses))


def test_the_start_built_on_the_host_is_the_computed_one():
    from bpjax import arguments
    from bpjax.loop import CHUNK, fresh_state, host_start, initial_state, pack

    prep, _ = arguments.prepare(
        MLP, PARAMS, X, Y, learning_rate=0.3, epochs=1, batch_size=1, optimizer=None,
        frozen=None, opt_state=optax.EmptyState(), shuffle=None, validation=None, tol=None,
        patience=None, min_delta=0.0)
    args = (MLP, prep.config, prep.data, prep.params, prep.opt_state, 5, CHUNK)
    start = fresh_state(np, prep.params[0].dtype, 5, 0)._replace(params=prep.params,
                                                                 opt_state=prep.opt_state)
    host = host_start(start, CHUNK)
    computed = jax.jit(lambda *a: pack(initial_state(*a)),
                       static_argnums=(0, 1, 6))(*args)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(computed)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert host.params is prep.params  # as given, not copied


@pytest.mark.parametrize("xp", [np, jnp], ids=["host", "traced"])
def test_pack_then_unpack_gives_every_field_back(xp):
    from bpjax.loop import LoopState, pack, unpack

    rng = np.random.default_rng(3)
    C = 5
    state = LoopState(
        params=PARAMS, opt_state=(), best_params=PARAMS, best_opt_state=(),
        best_loss=np.float64(0.25), best_epoch=np.int32(3), since_best=np.int32(4),
        epoch=np.int32(17), done=np.int32(6), count=np.int32(2), losses=rng.random(C),
        val_losses=rng.random(C), converged=np.bool_(True), stopped_early=np.bool_(False),
        diverged=np.bool_(True))
    packed = pack(state, xp=xp)
    loop = jax.jit(unpack)(packed) if xp is jnp else unpack(packed)
    for name in LoopState._fields:
        if name in ("params", "best_params"):
            assert getattr(loop, name) is not None
            continue
        expected, got = getattr(state, name), getattr(loop, name)
        assert np.asarray(got).dtype.kind == np.asarray(expected).dtype.kind, name
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=name)


@pytest.mark.parametrize("kwargs", [
    dict(learning_rate=0.5, epochs=150),
    dict(learning_rate=0.5, epochs=200, patience=70, validation=(X, 0.5 * Y)),
    dict(epochs=130, batch_size=3, optimizer=optax.adam(0.05), tol=1e-3),
], ids=["plain", "patience across calls", "adam"])
def test_eager_fit_in_chunks_is_the_traced_fit_in_one_loop(kwargs):
    # Eagerly, fit runs its loop in calls of at most CHUNK epochs, its state packed and reset
    # on the host between them; under jax.jit it is one traced loop of LoopStates.
    from bpjax.loop import CHUNK

    epochs = kwargs["epochs"]
    assert epochs > CHUNK
    eager = bp.fit(MLP, PARAMS, X, Y, **kwargs)
    traced = jax.jit(lambda p: bp.fit(MLP, p, X, Y, **kwargs))(PARAMS)
    if "patience" in kwargs:  # the best epoch in the first call, the stop in a later one
        assert 0 < eager.best_epoch < CHUNK < eager.epochs_run and eager.stopped_early
    for name in ("epoch", "epochs_run", "best_epoch", "converged", "stopped_early", "diverged",
                 "diverged_epoch"):
        assert getattr(eager, name) == getattr(traced, name).item(), name
    run = eager.epochs_run
    np.testing.assert_allclose(eager.losses, np.asarray(traced.losses)[:run], rtol=1e-12)
    assert np.all(np.isnan(np.asarray(traced.losses)[run:]))
    if "validation" in kwargs:
        np.testing.assert_allclose(eager.val_losses, np.asarray(traced.val_losses)[:run],
                                   rtol=1e-12)
    chex.assert_trees_all_close((eager.params, eager.opt_state),
                                (traced.params, traced.opt_state), rtol=1e-12, atol=1e-14)
