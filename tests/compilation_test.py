"""bpjax.compilation: XLA:CPU options kept when this jaxlib accepts them; the same results up to
rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax as bp
from bpjax import compilation
from bpjax.backward import loss_and_gradients
from conftest import random_data, random_params


def test_the_batched_options_are_accepted_by_this_jaxlib():
    assert compilation.cpu_options(compilation.BATCHED_CPU) == compilation.BATCHED_CPU


def test_an_option_this_jaxlib_does_not_know_is_left_out_with_a_warning():
    options = {**compilation.BATCHED_CPU, "xla_cpu_bpjax_no_such_option": True}
    with pytest.warns(RuntimeWarning, match=r"rejects the XLA:CPU option\(s\) "
                                            r"\['xla_cpu_bpjax_no_such_option'\]"):
        kept = compilation.cpu_options(options)
    assert kept == compilation.BATCHED_CPU


@pytest.mark.parametrize("N", [3, 300])
def test_compiled_with_the_options_the_results_are_the_same_to_rounding(N):
    net = bp.Network(4, [bp.Layer(6, ("tanh", "relu", "logistic") * 2), bp.Layer(2, "identity")])
    params = random_params(net, 0)
    X, Y = random_data(net, N, 0)
    plain = jax.jit(lambda p, X, Y: loss_and_gradients(net, p, X, Y))
    optioned = compilation.batched_jit(lambda p, X, Y: loss_and_gradients(net, p, X, Y))
    for a, b in zip(jax.tree.leaves(plain(params, X, Y)), jax.tree.leaves(
            optioned(params, X, Y))):  # float64: a sum in another order, nothing more
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_cpu_jit_passes_attributes_and_calls_through():
    f = compilation.CpuJit(lambda x: x * 2, {}, static_argnums=())
    assert float(f(jnp.float32(3))) == 6.0
    assert "mul" in f.lower(jnp.float32(3)).as_text()
    with pytest.raises(AttributeError):
        f.__no_such_dunder__  # noqa: B018


def test_inside_another_functions_trace_it_is_compiled_without_options():
    # JAX refuses compiler options on a nested jax.jit: an eager function called while a
    # user's function is traced must still work, with the outer function's options.
    net = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    params = random_params(net, 0)
    X, Y = random_data(net, 5, 0)
    want = bp.backprop(net, params, X, Y)
    for got in (jax.jit(lambda p: bp.backprop(net, p, X, Y))(params),  # params traced
                jax.jit(lambda: bp.backprop(net, params, X, Y))(),  # all constants
                jax.grad(lambda p: jnp.sum(bp.forward(net, p, X) ** 2))(params)):
        assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.jit(lambda p: bp.backprop(net, p, X, Y))(params), want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
