"""The XLA:CPU options of the per-sample loop, probed once: a jaxlib that rejects some of them
gets one warning and runs without them, with the same results."""

import importlib
import warnings

import jax
import numpy as np
import pytest

import bpjax as bp
from bpjax import algorithm1, minibatch, training
from conftest import random_data, random_params

NET = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, "identity")])
PARAMS = random_params(NET, 0)
X, Y = random_data(NET, 9, 0)
sweeps = importlib.import_module("bpjax.sweep")  # the module; bpjax.sweep is the function
BOGUS = "xla_bpjax_no_such_option"  # no jaxlib has it: a real rejection by XLA


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probe forgotten before and after the test; fit's loop rebuilt from the probe."""
    algorithm1.sequential_cpu_options.cache_clear()
    monkeypatch.setattr(training, "_loop_sequential_jit",
                        algorithm1.SequentialJit(minibatch.run, width=algorithm1.vector_width,
                                                 **training._LOOP_STATIC))
    yield
    algorithm1.sequential_cpu_options.cache_clear()


def _fit():
    return bp.fit(NET, PARAMS, X, Y, learning_rate=0.3, epochs=3)


REFERENCE = _fit()  # with every option this jaxlib accepts


def test_accepted_options_are_a_subset_that_compiles():
    accepted = algorithm1.sequential_cpu_options()
    assert accepted.items() <= algorithm1.SEQUENTIAL_CPU.items()
    assert algorithm1._compiles_on_cpu(accepted) is None
    for k, v in algorithm1.SEQUENTIAL_CPU.items():  # each one left out is really rejected
        if k not in accepted:
            assert algorithm1._compiles_on_cpu({k: v}) is not None
    assert algorithm1._compiles_on_cpu({BOGUS: True}) is not None
    assert algorithm1.sequential_cpu_options() is accepted  # probed once


def test_a_rejected_option_is_dropped_with_one_warning_and_the_same_results(
        fresh_probe, monkeypatch):
    monkeypatch.setattr(algorithm1, "SEQUENTIAL_CPU",
                        {**algorithm1.SEQUENTIAL_CPU, BOGUS: True})
    with pytest.warns(RuntimeWarning, match=BOGUS) as record:
        r = _fit()
    notes = [str(w.message) for w in record if BOGUS in str(w.message)]
    assert len(notes) == 1 and "same results" in notes[0]
    assert BOGUS not in algorithm1.sequential_cpu_options()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note comes once per process
        again = _fit()
    for u, v, w in zip(r.params, again.params, REFERENCE.params):
        np.testing.assert_array_equal(u, w)  # the other options kept: the same program
        np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(r.losses, REFERENCE.losses)


def test_a_jaxlib_that_rejects_every_option_runs_without_them(fresh_probe, monkeypatch):
    real = algorithm1._compiles_on_cpu
    monkeypatch.setattr(algorithm1, "_compiles_on_cpu",
                        lambda options: "XlaRuntimeError: no such option" if options else
                        real(options))
    monkeypatch.setattr(sweeps, "_loop_many_sequential_jit",
                        algorithm1.SequentialJit(sweeps._loop_many, **sweeps._STATIC))
    with pytest.warns(RuntimeWarning, match="compiled without them") as record:
        r = _fit()
    assert len(record) == 1
    assert algorithm1.sequential_cpu_options() == {}
    for u, w in zip(r.params, REFERENCE.params):  # the options only schedule the work
        np.testing.assert_allclose(u, w, rtol=1e-12, atol=1e-14)
    stacked = jax.tree.map(lambda w: np.stack([w, w]), PARAMS)
    many = bp.sweep(NET, stacked, X, Y, learning_rate=0.3, epochs=3)
    for u, w in zip(many.params, REFERENCE.params):
        np.testing.assert_allclose(u[1], w, rtol=1e-12, atol=1e-14)

