"""The XLA:CPU options of the per-sample loop, probed once: a jaxlib that rejects some of them
gets one warning and runs without them, with the same results."""

import importlib
import warnings

import jax
import numpy as np
import pytest

import bpjax as bp
from bpjax import algorithm1, compilation, minibatch, training
from conftest import random_data, random_params

NET = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
PARAMS = random_params(NET, 0)
X, Y = random_data(NET, 9, 0)
sweeps = importlib.import_module("bpjax.sweep")  # the module; bpjax.sweep is the function
BOGUS = "xla_bpjax_no_such_option"  # no jaxlib has it: a real rejection by XLA


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probes forgotten before and after the test; fit's loop rebuilt from the options."""
    compilation._accepted.cache_clear()
    yield
    compilation._accepted.cache_clear()


def _sequential_loop(monkeypatch, options=algorithm1.SEQUENTIAL_CPU):
    """fit's per-sample loop compiled with ``options``, as training builds it."""
    monkeypatch.setattr(algorithm1, "SEQUENTIAL_CPU", options)
    monkeypatch.setattr(training, "_loop_sequential_jit",
                        algorithm1.sequential_jit(minibatch.run, **training._LOOP_STATIC))


def _fit():
    return bp.fit(NET, PARAMS, X, Y, learning_rate=0.3, epochs=3)


REFERENCE = _fit()  # with every option this jaxlib accepts


def test_accepted_options_are_a_subset_that_compiles():
    accepted = compilation.cpu_options(algorithm1.SEQUENTIAL_CPU)
    assert accepted.items() <= algorithm1.SEQUENTIAL_CPU.items()
    assert compilation.compile_error(accepted) is None
    for k, v in algorithm1.SEQUENTIAL_CPU.items():  # each one left out is really rejected
        if k not in accepted:
            assert compilation.compile_error({k: v}) is not None
    assert compilation.compile_error({BOGUS: True}) is not None
    before = compilation._accepted.cache_info().misses
    assert compilation.cpu_options(algorithm1.SEQUENTIAL_CPU) == accepted
    assert compilation._accepted.cache_info().misses == before  # probed once


def test_the_vector_width_is_chosen_per_network():
    narrow = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
    wide = bp.Network(3, [bp.Layer(300, "tanh"), bp.Layer(2, "identity")])
    jit = algorithm1.sequential_jit(lambda net, x: x + 1, static_argnums=0)
    assert float(jit(narrow, np.float32(1))) == 2 and float(jit(wide, np.float32(1))) == 2
    if jax.default_backend() == "cpu" and "xla_cpu_prefer_vector_width" in \
            compilation.cpu_options(algorithm1.SEQUENTIAL_CPU):
        assert set(jit.jits) == {(("xla_cpu_prefer_vector_width", 256),),
                                 (("xla_cpu_prefer_vector_width", 512),)}


def test_a_rejected_option_is_dropped_with_one_warning_and_the_same_results(
        fresh_probe, monkeypatch):
    options = {**algorithm1.SEQUENTIAL_CPU, BOGUS: True}
    _sequential_loop(monkeypatch, options)
    with pytest.warns(RuntimeWarning, match=BOGUS) as record:
        r = _fit()
    notes = [str(w.message) for w in record if BOGUS in str(w.message)]
    assert len(notes) == 1 and "same results" in notes[0]
    assert BOGUS not in compilation.cpu_options(options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note comes once per process
        again = _fit()
    for u, v, w in zip(r.params, again.params, REFERENCE.params):
        np.testing.assert_array_equal(u, w)  # the other options kept: the same program
        np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(r.losses, REFERENCE.losses)


def test_a_jaxlib_that_rejects_every_option_runs_without_them(fresh_probe, monkeypatch):
    real = compilation.compile_error
    monkeypatch.setattr(compilation, "compile_error",
                        lambda options: "XlaRuntimeError: no such option" if options else
                        real(options))
    _sequential_loop(monkeypatch)
    monkeypatch.setattr(sweeps, "_loop_many_sequential_jit",
                        algorithm1.sequential_jit(sweeps._loop_many, per_network=None,
                                                  **sweeps._STATIC))
    with pytest.warns(RuntimeWarning, match="compiled without them") as record:
        r = _fit()
    assert len(record) == 1 and "per-sample loop" in str(record[0].message)
    assert compilation.cpu_options(algorithm1.SEQUENTIAL_CPU) == {}
    for u, w in zip(r.params, REFERENCE.params):  # the options only schedule the work
        np.testing.assert_allclose(u, w, rtol=1e-12, atol=1e-14)
    stacked = jax.tree.map(lambda w: np.stack([w, w]), PARAMS)
    many = bp.sweep(NET, stacked, X, Y, learning_rate=0.3, epochs=3)
    for u, w in zip(many.params, REFERENCE.params):
        np.testing.assert_allclose(u[1], w, rtol=1e-12, atol=1e-14)

