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

    def corrupt(net, p, X, Y, s, loss):  # a backward pass with one wrong entry: w^2_(3,2)
        value, grads = honest(net, p, X, Y, s, loss)
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

    def corrupt(net, p, X, Y, s, loss):
        value, grads = honest(net, p, X, Y, s, loss)
        return value, (*grads[:2], grads[2].at[1, 0].add(1e-3))

    monkeypatch.setattr(gc, "loss_and_gradients_jit", corrupt)
    report = bp.check_gradients(net, params, X, Y, raise_on_failure=False)
    assert not report.ok and report.worst == (3, 1, 1)


# --- raise_on_failure=False always returns the report; bad tolerances are argument errors --------

@pytest.mark.parametrize("wrong", [
    _broken("bad_sin_report", jnp.sin, lambda a: -jnp.cos(a)),   # wrong everywhere
    _broken("nan_d_report", jnp.tanh, lambda a: jnp.where(a > 1, jnp.nan, 1 - jnp.tanh(a) ** 2)),
    _broken("bad_far_report", jnp.tanh,                          # wrong only far from the data
            lambda a: jnp.where(a > 7, 0.0, 1 - jnp.tanh(a) ** 2)),
])
def test_a_wrong_activation_derivative_gives_a_failing_report_without_raising(wrong):
    net = bp.Network(2, [bp.Layer(2, (wrong, "tanh")), bp.Layer(1, "identity")])
    params = random_params(net, 0)
    X, Y = random_data(net, 3, 0)
    report = bp.check_gradients(net, params, X, Y, raise_on_failure=False,
                                finite_differences=True)
    assert isinstance(report, bp.GradCheckReport) and not report.ok
    assert len(report.activations) == 1 and wrong.name in report.activations[0]
    assert "FAILED" in str(report) and wrong.name in str(report)
    with pytest.raises(bp.GradientCheckError, match=wrong.name) as info:
        bp.check_gradients(net, params, X, Y)
    assert info.value.report is None or not info.value.report.ok


def test_a_passing_report_has_no_activation_failures():
    params = random_params(NET, 0)
    X, Y = random_data(NET, 3, 0)
    report = bp.check_gradients(NET, params, X, Y, raise_on_failure=False)
    assert report.ok and report.activations == ()


BAD_TOLERANCES = [
    (dict(rtol=-1.0, atol=0.0), ValueError, r"rtol must be >= 0, got -1.0"),
    (dict(atol=-1e-9), ValueError, r"atol must be >= 0, got -1e-09"),
    (dict(rtol=float("nan")), ValueError, r"rtol must be finite, got nan"),
    (dict(atol=float("inf")), ValueError, r"atol must be finite, got inf"),
    (dict(rtol="1e-8"), TypeError, r"rtol must be a number, got str"),
    (dict(finite_differences=True, fd_eps=0), ValueError, r"fd_eps must be > 0, got 0"),
    (dict(fd_eps=-1e-6), ValueError, r"fd_eps must be > 0, got -1e-06"),
    (dict(fd_eps=float("nan")), ValueError, r"fd_eps must be finite, got nan"),
    (dict(fd_eps=1e-6j), TypeError, r"fd_eps must be a number, got complex"),
    (dict(fd_rtol=-1.0), ValueError, r"fd_rtol must be >= 0, got -1.0"),
    (dict(fd_atol=-1.0), ValueError, r"fd_atol must be >= 0, got -1.0"),
    (dict(fd_atol=None), TypeError, r"fd_atol must be a number, got NoneType"),
    (dict(finite_differences="yes"), TypeError, r"finite_differences must be True or False"),
    (dict(raise_on_failure=None), TypeError, r"raise_on_failure must be True or False"),
    (dict(net=None), TypeError, r"check_gradients expects a bpjax.Network, got NoneType"),
    (dict(X=np.ones((3, 3), np.complex128)), TypeError, r"X must be real, got dtype complex128"),
]


@pytest.mark.parametrize("bad, error, message", BAD_TOLERANCES)
def test_bad_arguments_of_check_gradients(bad, error, message):
    args = dict(net=NET, params=random_params(NET, 0), X=np.ones((3, 3)), Y=np.ones((3, 2)))
    args.update(bad)
    with pytest.raises(error, match=message):
        bp.check_gradients(args.pop("net"), args.pop("params"), args.pop("X"), args.pop("Y"),
                           **args)


@pytest.mark.parametrize("bad, error, message", [
    (dict(rtol=-1.0), ValueError, r"rtol must be >= 0, got -1.0"),
    (dict(atol=float("nan")), ValueError, r"atol must be finite, got nan"),
    (dict(a=np.array([1j])), TypeError, r"a must be real, got dtype complex128"),
    (dict(a=np.array(["x"])), TypeError, r"a must be a numeric array, got dtype <U1"),
])
def test_bad_arguments_of_check_activation(bad, error, message):
    with pytest.raises(error, match=message):
        bp.check_activation("tanh", **bad)
