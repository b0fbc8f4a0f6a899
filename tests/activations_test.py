"""Each activation's hand-written derivative against jax.grad, stability, registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from bpjax import activations
from conftest import BUILTIN, REFERENCE_PHI

POINTS = np.concatenate([np.linspace(-6, 6, 121), [-1e-3, 1e-3, 0.0]])


@pytest.mark.parametrize("name", BUILTIN)
def test_phi_is_the_named_function(name):
    act = bp.get_activation(name)
    np.testing.assert_allclose(act.phi(POINTS), REFERENCE_PHI[name](POINTS), rtol=1e-14)


@pytest.mark.parametrize("name", BUILTIN)
def test_derivative_matches_jax_grad_float64(name):
    act = bp.get_activation(name)
    ref = jax.vmap(jax.grad(REFERENCE_PHI[name]))(jnp.asarray(POINTS))
    np.testing.assert_allclose(act.dphi(jnp.asarray(POINTS)), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", BUILTIN)
def test_derivative_under_jit_and_float32(name):
    act = bp.get_activation(name)
    a = jnp.asarray(POINTS, jnp.float32)
    d = jax.jit(act.dphi)(a)
    assert d.dtype == jnp.float32
    ref = jax.vmap(jax.grad(REFERENCE_PHI[name]))(jnp.asarray(POINTS))
    np.testing.assert_allclose(d, ref, rtol=1e-5, atol=1e-6)


def test_paper_derivatives_worked_by_hand():
    # Algorithm 2, lines 6-8: z -> 1, z² -> 2a, logistic -> φ(a)(1 - φ(a))
    a = jnp.array([-2.0, 0.5, 3.0])
    np.testing.assert_array_equal(bp.get_activation("identity").dphi(a), [1, 1, 1])
    np.testing.assert_array_equal(bp.get_activation("square").dphi(a), [-4.0, 1.0, 6.0])
    s = 1 / (1 + np.exp(-np.asarray(a)))
    np.testing.assert_allclose(bp.get_activation("logistic").dphi(a), s * (1 - s), rtol=1e-14)


def test_relu_kink_follows_jax():
    relu = bp.get_activation("relu")
    assert float(relu.dphi(jnp.float32(0))) == float(jax.grad(jax.nn.relu)(0.0)) == 0.0


@pytest.mark.parametrize("name", ["logistic", "softplus", "tanh"])
def test_stable_for_large_inputs_float32(name):
    act = bp.get_activation(name)
    a = jnp.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4], jnp.float32)
    assert np.all(np.isfinite(act.phi(a))) and np.all(np.isfinite(act.dphi(a)))
    if name == "softplus":
        np.testing.assert_allclose(act.phi(a)[-1], 1e4, rtol=1e-7)
        assert float(act.phi(a)[0]) >= 0


def test_sigmoid_alias():
    assert bp.get_activation("sigmoid") is bp.get_activation("logistic")


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*identity.*logistic"):
        bp.get_activation("swish")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        bp.Layer(3, "swish")
    with pytest.raises(TypeError, match="name .str. or a bpjax.Activation"):
        bp.Layer(3, 42)


def test_register_and_use_a_user_activation():
    cube = bp.register_activation("test_cube", lambda a: a**3, lambda a: 3 * a**2,
                                  overwrite=True)
    assert "test_cube" in bp.available_activations()
    assert bp.check_activation("test_cube") < 1e-10
    net = bp.Network(1, [bp.Layer(2, ("test_cube", "tanh")), bp.Layer(1, cube)])
    assert net.layers[1].activations == (cube,)
    with pytest.raises(ValueError, match="already registered"):
        bp.register_activation("test_cube", jnp.sin, jnp.cos)


def _dtanh(a):
    return 1 - jnp.tanh(a) ** 2


BROKEN = [  # (name, phi, dphi, init): what is wrong is said when it is registered or used
    ("t_short_dphi", jnp.tanh, lambda a: jnp.ones(3), "glorot", ValueError,
     r"activation 't_short_dphi': dphi must be elementwise .* got \(3,\)"),
    ("t_sum_phi", jnp.sum, _dtanh, "glorot", ValueError,
     r"activation 't_sum_phi': phi must be elementwise .* got \(\)"),
    ("t_python_if", lambda a: a if a > 0 else -a, _dtanh, "glorot", TypeError,
     r"activation 't_python_if': phi fails on an array of shape \(2, 3\) \(\w+: .*\); it "
     r"must be elementwise"),
    ("t_no_dphi", jnp.tanh, None, "glorot", TypeError,
     r"activation 't_no_dphi' needs callables phi and dphi, got \w+ and NoneType"),
    ("t_bad_init", jnp.tanh, _dtanh, "zeros", ValueError,
     r"activation 't_bad_init': init must be 'glorot' or 'he', got 'zeros'"),
    (3, jnp.tanh, _dtanh, "glorot", TypeError, r"activation name must be a non-empty str, got 3"),
]


@pytest.mark.parametrize("name, phi, dphi, init, error, message", BROKEN)
def test_an_activation_that_cannot_work_is_refused_before_any_work(name, phi, dphi, init, error,
                                                                    message):
    with pytest.raises(error, match=message):
        bp.register_activation(name, phi, dphi, init=init)
    assert name not in bp.available_activations()
    with pytest.raises(error, match=message):  # given as an Activation, to a Layer
        bp.Layer(2, bp.Activation(name, phi, dphi, init))


def test_per_neuron_mix_applies_each_function_to_its_neuron():
    acts = tuple(bp.get_activation(n) for n in ("square", "identity", "square", "relu"))
    a = jnp.array([[-2.0, -2.0, 3.0, -1.0], [1.5, 4.0, -1.0, 2.0]])
    np.testing.assert_array_equal(activations.phi(acts, a), [[4, -2, 9, 0], [2.25, 4, 1, 2]])
    np.testing.assert_array_equal(activations.dphi(acts, a), [[-4, 1, 6, 0], [3, 1, -2, 1]])


def test_per_neuron_mix_is_vectorised_not_a_loop_over_neurons():
    names = ("tanh", "relu", "logistic") * 171  # 513 neurons, 3 distinct functions
    acts = tuple(bp.get_activation(n) for n in names[:512])
    jaxpr = jax.make_jaxpr(lambda a: activations.phi(acts, a))(jnp.zeros((4, 512)))
    # one select per extra distinct activation, not one op per neuron
    assert len(jaxpr.eqns) < 20


# --- overwriting a name: networks hold the functions their names meant when they were built ----

@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(activations, "_REGISTRY", dict(activations._REGISTRY))
    monkeypatch.setattr(activations, "_ALIASES", dict(activations._ALIASES))


@pytest.mark.parametrize("name", ["test_overwritten", "sigmoid", "logistic", "identity"])
def test_overwriting_a_name_never_gives_stale_numbers(registry, name):
    x, y = jnp.array([[0.5], [-1.5]]), jnp.array([[1.0], [2.0]])
    if name == "test_overwritten":
        bp.register_activation(name, jnp.sin, jnp.cos)
    old = bp.Network(1, [bp.Layer(2, name), bp.Layer(1, ("tanh",))])
    params = bp.init(old, jax.random.key(0))
    before = bp.forward(old, params, x), bp.backprop(old, params, x, y)  # compiles for `old`
    fit_before = bp.fit(old, params, x, y, learning_rate=0.1, epochs=2).params
    new_act = bp.register_activation(name, lambda a: a**3, lambda a: 3 * a**2, overwrite=True)
    new = bp.Network(1, [bp.Layer(2, name), bp.Layer(1, ("tanh",))])
    assert new != old and hash(new) != hash(old) and repr(new) == repr(old)
    assert bp.get_activation(name) == new_act and new.layers[0].activations == (new_act,) * 2
    # the new network computes with the new function and derivative ...
    ref = (jnp.tanh(((x * params[0][1] + params[0][0]) ** 3) @ params[1][1:] + params[1][0]))
    np.testing.assert_allclose(bp.forward(new, params, x), ref, rtol=1e-12)
    assert bp.check_gradients(new, params, x, y).ok
    assert not np.allclose(bp.fit(new, params, x, y, learning_rate=0.1, epochs=2).params[0],
                           fit_before[0])
    # ... and the one built before keeps the functions it was built with, compiled or not
    np.testing.assert_array_equal(bp.forward(old, params, x), before[0])
    np.testing.assert_array_equal(bp.backprop(old, params, x, y)[0], before[1][0])
    np.testing.assert_array_equal(bp.fit(old, params, x, y, learning_rate=0.1, epochs=2).params[0],
                                  fit_before[0])


def test_overwriting_an_alias_replaces_what_the_alias_names(registry):
    cube = bp.register_activation("sigmoid", lambda a: a**3, lambda a: 3 * a**2, overwrite=True)
    assert bp.get_activation("sigmoid") is cube
    assert bp.get_activation("logistic").phi(jnp.array(0.0)) == 0.5  # its old target stays
    assert "sigmoid" in bp.available_activations()
    with pytest.raises(ValueError, match="already registered"):
        bp.register_activation("linear", jnp.sin, jnp.cos)  # an alias is a taken name too


def test_saving_a_network_whose_activation_was_overwritten_is_refused(registry, tmp_path):
    bp.register_activation("test_saved", jnp.sin, jnp.cos)
    net = bp.Network(1, [bp.Layer(1, "test_saved")])
    params = bp.init(net, jax.random.key(0))
    bp.register_activation("test_saved", jnp.tanh, lambda a: 1 - jnp.tanh(a) ** 2, overwrite=True)
    with pytest.raises(ValueError, match=r"layer 1 uses the activation 'test_saved', which is "
                                         r"not registered under that name"):
        bp.save(tmp_path / "m.npz", net, params)
    assert not any(tmp_path.iterdir())
