"""The gradient checker: passes on the real backward pass, catches wrong derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from conftest import DAG_NETS, random_data, random_params

NET = bp.Network(3, [bp.Layer(4, ("tanh", "relu", "softplus", "square")),
                     bp.Layer(2, "logistic", inputs=(0, 1))])


def test_report_passes_with_finite_differences():
    params = random_params(NET, 0)
    X, Y = random_data(NET, 5, 0)
    report = bp.check_gradients(NET, params, X, Y, finite_differences=True)
    assert report.ok and len(report.against_autodiff) == 2
    assert len(report.against_finite_differences) == 2
    assert all(r.max_rel < 1e-12 for r in report.against_autodiff)
    assert "gradient check passed" in str(report) and "finite differences" in str(report)


def test_float32_params_are_checked_in_float64_without_flipping_x64():
    params = random_params(NET, 1, jnp.float32)
    X, Y = random_data(NET, 3, 1, jnp.float32)
    with jax.enable_x64(False):
        report = bp.check_gradients(NET, params, X, Y)
        assert not jax.config.jax_enable_x64
    assert report.ok and report.loss > 0


def _broken(name, phi, wrong_dphi):
    return bp.Activation(name, phi, wrong_dphi)


def test_wrong_user_derivative_is_named():
    bad = _broken("bad_sin", jnp.sin, lambda a: -jnp.cos(a))
    with pytest.raises(bp.GradientCheckError, match=r"activation 'bad_sin': dphi\(.*\) = .* but"):
        bp.check_activation(bad)
    net = bp.Network(2, [bp.Layer(2, bad), bp.Layer(1, "identity")])
    params = random_params(net, 0)
    X, Y = random_data(net, 3, 0)
    with pytest.raises(bp.GradientCheckError, match="bad_sin"):
        bp.check_gradients(net, params, X, Y)


def test_non_finite_user_derivative_is_caught():
    nan_d = _broken("nan_d", jnp.tanh, lambda a: jnp.where(a > 1, jnp.nan, 1 - jnp.tanh(a) ** 2))
    with pytest.raises(bp.GradientCheckError, match=r"activation 'nan_d': dphi gives nan at a = "):
        bp.check_activation(nan_d)
    inf_d = _broken("inf_d", jnp.sin, lambda a: jnp.cos(a) / (a != 0))
    with pytest.raises(bp.GradientCheckError, match=r"'inf_d': dphi gives inf at a = 0"):
        bp.check_activation(inf_d)


def test_mismatch_report_names_the_worst_weight(monkeypatch):
    params = random_params(NET, 2)
    X, Y = random_data(NET, 4, 2)
    import bpjax.gradcheck as gc
    honest = gc.loss_and_gradients_jit

    def corrupt(net, p, X, Y, s):  # a backward pass with one wrong entry: w^2_(3,2)
        value, grads = honest(net, p, X, Y, s)
        return value, (grads[0], grads[1].at[3, 1].add(1e-3))

    monkeypatch.setattr(gc, "loss_and_gradients_jit", corrupt)
    report = bp.check_gradients(NET, params, X, Y, raise_on_failure=False)
    assert not report.ok and report.worst == (2, 3, 2)
    assert report.against_autodiff[0].ok and not report.against_autodiff[1].ok
    assert "FAILED" in str(report) and "w^2_(3,2) = grads[1][3, 1]" in str(report)
    with pytest.raises(bp.GradientCheckError, match="does not match"):
        bp.check_gradients(NET, params, X, Y)


def test_nan_in_data_is_refused():
    params = random_params(NET, 0)
    X, Y = random_data(NET, 3, 0)
    with pytest.raises(ValueError, match=r"X holds 1 NaN/Inf value\(s\), first at index \(1, 2\)"):
        bp.check_gradients(NET, params, X.at[1, 2].set(np.nan), Y)


@pytest.mark.parametrize("name", ["fan_out", "masked_skip", "dead_layer"])
def test_check_gradients_on_dags(name):
    net = DAG_NETS[name]
    params = random_params(net, 3)
    X, Y = random_data(net, 4, 3)
    report = bp.check_gradients(net, params, X, Y, finite_differences=True)
    assert report.ok and len(report.against_finite_differences) == net.depth
    assert all(r.max_rel < 1e-12 for r in report.against_autodiff)


def test_check_gradients_catches_a_wrong_skip_connection_gradient(monkeypatch):
    # corrupt ∂L/∂w^3_(1,1), the skip connection from x[1] straight into the output
    net = DAG_NETS["masked_skip"]
    assert net.structure(3)[1, 0] and net.sources(3)[0] == 0
    params = random_params(net, 4)
    X, Y = random_data(net, 3, 4)
    import bpjax.gradcheck as gc
    honest = gc.loss_and_gradients_jit

    def corrupt(net, p, X, Y, s):
        value, grads = honest(net, p, X, Y, s)
        return value, (*grads[:2], grads[2].at[1, 0].add(1e-3))

    monkeypatch.setattr(gc, "loss_and_gradients_jit", corrupt)
    report = bp.check_gradients(net, params, X, Y, raise_on_failure=False)
    assert not report.ok and report.worst == (3, 1, 1)
