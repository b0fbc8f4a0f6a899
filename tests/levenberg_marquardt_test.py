"""bp.levenberg_marquardt against trainlm's rules written out independently (numpy, float64)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from bpjax.levenberg_marquardt import MAX_FREE_WEIGHTS
from conftest import DAG_NETS, random_data, random_params, reference_forward

PAPER = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
CLAMPS = {(1, 0, 2): 0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0}  # w^1_02, w^2_11, w^2_21 (§1.3.1)
TANH = bp.Network(1, [bp.Layer(4, "tanh"), bp.Layer(1, "identity")])


def paper_data(N=40, noise=0.0, seed=0):
    """Equation (5) with ω_2 = (1, −0.5), ω_1 = (0.5, 2), ω_0ᵀ1 = 0.2, plus optional noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (N, 2))
    Y = (X @ [1.0, -0.5]) ** 2 + X @ [0.5, 2.0] + 0.2 + noise * rng.normal(size=N)
    return X, Y[:, None]


def reference_lm(net, params, X, Y, *, iterations, frozen=None, mu=1e-3, mu_dec=0.1,
                 mu_inc=10.0, mu_max=1e10, min_grad=1e-7, tol=-np.inf):
    """trainlm, written out: e and J = ∂e/∂w (jax.jacfwd of the reference forward pass) over
    the free weights, Δ = −(JᵀJ + μI)⁻¹Jᵀe by numpy's solve, accept iff the loss goes down.

    As documented, the search for the next step runs right after each accepted one (so μ and
    the count of solves include one search beyond the last iteration)."""
    shapes = [w.shape for w in params]
    sizes = [int(np.prod(s)) for s in shapes]
    free = np.concatenate([(net.structure(l) & (True if frozen is None else ~np.asarray(f)))
                           .ravel() for l, f in zip(range(1, net.depth + 1),
                                                    frozen or [None] * net.depth)])
    w = np.concatenate([np.asarray(p, np.float64).ravel() for p in params])

    def unflat(v):
        return tuple(jnp.reshape(part, s) for part, s in
                     zip(jnp.split(v, np.cumsum(sizes)[:-1]), shapes))

    def residuals(v):
        return (reference_forward(net, unflat(v), X) - Y).ravel()

    e_jit, jac = jax.jit(residuals), jax.jit(jax.jacfwd(residuals))

    def e_of(v):
        return np.asarray(e_jit(jnp.asarray(v)))
    solves = 0

    def search(w, e, loss, mu):
        nonlocal solves
        J = np.asarray(jac(jnp.asarray(w)))[:, free]
        g = J.T @ e
        if np.sqrt(g @ g) <= min_grad:
            return None, mu
        while mu <= mu_max:
            solves += 1
            delta = np.linalg.solve(J.T @ J + mu * np.eye(len(g)), -g)
            w2 = w.copy()
            w2[free] += delta
            e2 = e_of(w2)
            loss2 = e2 @ e2 / (2 * len(X))
            if loss2 < loss:
                return (w2, e2, loss2), max(mu * mu_dec, 1e-20)
            mu *= mu_inc
        return None, mu

    e = e_of(w)
    losses = []
    step, mu = search(w, e, e @ e / (2 * len(X)), mu)
    for _ in range(iterations):
        if step is None:  # μ passed mu_max, or the gradient reached min_grad
            break
        w, e, loss = step
        losses.append(loss)
        step, mu = search(w, e, loss, mu)
        if loss <= tol:
            break
    return [np.asarray(p) for p in unflat(jnp.asarray(w))], np.array(losses), mu, solves


def _compare(r, ref, rtol=1e-9):
    params, losses, mu, solves = ref
    assert r.epochs_run == len(losses)
    np.testing.assert_allclose(r.losses, losses, rtol=rtol)
    for a, b in zip(r.params, params):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    np.testing.assert_allclose(r.opt_state.mu, mu, rtol=1e-12)
    assert int(r.opt_state.solves) == solves


def test_the_paper_s_example_free_matches_the_reference_loop():
    X, Y = paper_data(noise=0.05)  # a non-zero residual at the minimum: no floor to tie on
    p0 = bp.init(PAPER, jax.random.key(2), dtype=jnp.float64)
    r = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=8)
    ref = reference_lm(PAPER, p0, X, Y, iterations=8)
    _compare(r, ref)
    assert np.all(np.diff(r.losses) < 0)


def test_rejected_steps_grow_mu_like_the_reference():
    """A large first μ and a tanh net: steps get rejected and μ moves both ways."""
    X = np.linspace(-2, 2, 25)[:, None]
    Y = np.sin(2 * X) + 0.3 * X**2
    p0 = random_params(TANH, 11)
    kw = dict(iterations=12, mu=3.0, mu_inc=4.0, mu_dec=0.3)
    r = bp.levenberg_marquardt(TANH, p0, X, Y, **kw)
    ref = reference_lm(TANH, p0, X, Y, **kw)
    _compare(r, ref)
    assert ref[3] > r.epochs_run + 1  # some trials were rejected


def test_mu_never_falls_below_trainlm_s_floor():
    """μ ← max(μ·mu_dec, 1e-20). A linear model: the first step from μ = 1e-15 solves the least
    squares problem, μ·mu_dec = 1e-21 is floored to 1e-20, and min_grad stops the next search."""
    net = bp.Network(2, [bp.Layer(1, "identity")])
    X, _ = random_data(net, 20, 3)
    Y = X @ jnp.array([[1.0], [-2.0]]) + 0.5 + 0.1 * jnp.sin(7 * X[:, :1])
    p0 = random_params(net, 3)
    kw = dict(iterations=5, mu=1e-15, mu_dec=1e-6, min_grad=1e-8)
    r = bp.levenberg_marquardt(net, p0, X, Y, **kw)
    _compare(r, reference_lm(net, p0, X, Y, **kw))
    assert r.epochs_run == 1 and float(r.opt_state.mu) == 1e-20 and not r.opt_state.found


def test_dag_with_masks_and_clamps_matches_the_reference_loop():
    net = DAG_NETS["masked_skip"]
    p0 = random_params(net, 5)
    X, Y = random_data(net, 12, 5)
    frozen = bp.frozen_mask(net, [(2, 0, 1), (3, 1, 1)])
    kw = dict(iterations=6, frozen=frozen)
    r = bp.levenberg_marquardt(net, p0, X, Y, **kw)
    _compare(r, reference_lm(net, p0, X, Y, **kw))
    for l, (w, w0) in enumerate(zip(r.params, p0), start=1):
        keep = np.asarray(frozen[l - 1]) | ~net.structure(l)
        assert np.array_equal(np.asarray(w)[keep], np.asarray(w0 * net.structure(l))[keep])


def test_clamped_weights_stay_bit_for_bit_and_omega_is_recovered():
    X, Y = paper_data()
    p0, frozen = bp.clamp(PAPER, bp.init(PAPER, jax.random.key(0), dtype=jnp.float64),
                          {(1, 0, 2): -0.0, (2, 1, 1): 1.0, (2, 2, 1): 1.0})
    r = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=30, min_grad=0.0, frozen=frozen)
    bits = lambda w: np.asarray(w).view(np.uint64)
    for w, w0, m in zip(r.params, p0, frozen):
        m = np.asarray(m)
        assert np.array_equal(bits(w)[m], bits(w0)[m])  # -0.0 stays -0.0
    w1 = np.asarray(r.params[0])
    u, v = w1[1:, 1] * np.sign(w1[1, 1]), w1[1:, 0]
    np.testing.assert_allclose(u, [1.0, -0.5], atol=1e-12)  # ω_2 up to its sign
    np.testing.assert_allclose(v, [0.5, 2.0], atol=1e-12)  # ω_1
    np.testing.assert_allclose(w1[0, 0], 0.2, atol=1e-12)  # ω_0ᵀ1_D
    # at the float64 floor every step is rejected: μ passes mu_max, training stops
    assert not r.opt_state.found and r.opt_state.mu > 1e10 and r.epochs_run < 30
    assert r.losses[-1] < 1e-28


def test_min_grad_and_tol_stop_training():
    X, Y = paper_data()
    p0 = bp.init(PAPER, jax.random.key(1), dtype=jnp.float64)
    r = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=20, min_grad=1e6)
    assert r.epochs_run == 0 and r.losses.shape == (0,) and not r.opt_state.found
    assert all(np.array_equal(a, b) for a, b in zip(r.params, p0))
    r = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=20, min_grad=1e-3)
    ref = reference_lm(PAPER, p0, X, Y, iterations=20, min_grad=1e-3)
    assert 0 < r.epochs_run == len(ref[1]) < 20 and r.opt_state.grad_norm <= 1e-3
    r = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=20, tol=1e-8)
    assert r.converged and r.losses[-1] <= 1e-8 < r.losses[-2]


def test_validation_and_patience_return_the_best_weights():
    X, Y = paper_data(N=30, noise=0.3, seed=1)
    Xv, Yv = paper_data(N=30, noise=0.3, seed=2)
    net = bp.Network(2, [bp.Layer(6, "tanh"), bp.Layer(1, "identity")])  # overfits 30 points
    p0 = random_params(net, 1)
    r = bp.levenberg_marquardt(net, p0, X, Y, iterations=40, validation=(Xv, Yv), patience=3)
    assert r.val_losses.shape == r.losses.shape
    assert r.stopped_early and r.best_epoch == int(np.argmin(r.val_losses)) + 1
    np.testing.assert_allclose(bp.loss(net, r.params, Xv, Yv), r.val_losses.min(), rtol=1e-12)


def test_resume_and_under_jit():
    X, Y = paper_data(noise=0.05)
    p0 = bp.init(PAPER, jax.random.key(2), dtype=jnp.float64)
    first = bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=3)
    again = bp.levenberg_marquardt(PAPER, first, X, Y, iterations=2)
    assert again.epoch == 5 and again.epochs_run == 2
    jitted = jax.jit(lambda p: bp.levenberg_marquardt(PAPER, p, X, Y, iterations=3))(p0)
    np.testing.assert_allclose(jitted.losses, first.losses, rtol=1e-13)
    assert int(jitted.epochs_run) == 3


def test_float32():
    X, Y = paper_data()
    p0 = bp.init(PAPER, jax.random.key(0), dtype=jnp.float32)
    r = bp.levenberg_marquardt(PAPER, p0, X.astype(np.float32), Y.astype(np.float32),
                               iterations=15)
    assert r.losses.dtype == np.float32 and r.params[0].dtype == np.float32
    assert r.losses[-1] < 1e-8


NET_X = np.zeros((4, 2))
NET_Y = np.zeros((4, 1))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(iterations=0), ValueError, r"iterations must be >= 1, got 0"),
    (dict(iterations=-3), ValueError, r"iterations must be >= 1"),
    (dict(iterations=2.0), TypeError, r"iterations must be an int"),
    (dict(mu=0.0), ValueError, r"mu must be > 0, got 0.0"),
    (dict(mu=-1e-3), ValueError, r"mu must be > 0"),
    (dict(mu=float("nan")), ValueError, r"mu must be finite"),
    (dict(mu_dec=0.0), ValueError, r"mu_dec must be > 0"),
    (dict(mu_dec=1.0), ValueError, r"mu_dec must be in \(0, 1\)"),
    (dict(mu_dec=2.5), ValueError, r"mu_dec must be in \(0, 1\)"),
    (dict(mu_inc=1.0), ValueError, r"mu_inc must be > 1, got 1.0"),
    (dict(mu_inc=0.5), ValueError, r"mu_inc must be > 1"),
    (dict(mu=1.0, mu_max=0.5), ValueError, r"mu must be <= mu_max"),
    (dict(min_grad=-1.0), ValueError, r"min_grad must be >= 0"),
    (dict(loss="softmax_cross_entropy"), ValueError, r"supports only the squared loss"),
    (dict(loss="binary_cross_entropy"), ValueError, r"loss='squared'.*got loss='binary"),
    (dict(jacobian_mode="sideways"), ValueError, r"jacobian_mode must be one of"),
    (dict(tol=-1.0), ValueError, r"tol must be >= 0"),
    (dict(patience=0), ValueError, r"patience must be >= 1"),
    (dict(progress="yes"), TypeError, r"progress must be True, False or a dict"),
])
def test_bad_hyper_parameters_are_refused(kwargs, error, match):
    p0 = bp.init(PAPER, jax.random.key(0))
    with pytest.raises(error, match=match):
        bp.levenberg_marquardt(PAPER, p0, NET_X, NET_Y, **{"iterations": 5, **kwargs})


def test_too_many_free_weights_and_none_are_refused(monkeypatch):
    wide = bp.Network(1, [bp.Layer(MAX_FREE_WEIGHTS, "tanh"), bp.Layer(1, "identity")])
    p = bp.init(wide, jax.random.key(0))
    n = wide.num_params
    with pytest.raises(ValueError, match=rf"at most MAX_FREE_WEIGHTS = {MAX_FREE_WEIGHTS}; "
                                         rf"this network has {n} free weights"):
        bp.levenberg_marquardt(wide, p, np.zeros((3, 1)), np.zeros(3), iterations=1)
    # the count is of free weights: structural zeros and clamped weights are not unknowns
    monkeypatch.setattr(importlib.import_module("bpjax.levenberg_marquardt"), "MAX_FREE_WEIGHTS", 7)
    p0 = bp.init(PAPER, jax.random.key(0))  # 9 entries, w^2_01 a structural zero: 8 weights
    X, Y = paper_data(N=4)
    with pytest.raises(ValueError, match=r"MAX_FREE_WEIGHTS = 7; this network has 8 free"):
        bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=1)
    one = bp.frozen_mask(PAPER, [(2, 1, 1)])
    assert bp.levenberg_marquardt(PAPER, p0, X, Y, iterations=1, frozen=one).epochs_run == 1
    everything = tuple(jnp.ones(w.shape, bool) for w in p0)
    with pytest.raises(ValueError, match="no free weights"):
        bp.levenberg_marquardt(PAPER, p0, NET_X, NET_Y, iterations=1, frozen=everything)
