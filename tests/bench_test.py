"""The benchmark harness's logic (no timings are asserted): statistics, interleaving, the
report writer, the FLOP count, and that the baselines do the same per-sample SGD as the paper.

The SGD reference is written here from Algorithm 1 with ``jax.grad`` in float64:
``w ← w − (η/N) ∂L/∂w(x_i)`` with ``∂L/∂w(x_i)`` the gradient of ``½‖φ_θ(x_i) − y_i‖²``.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks import baselines as B
from benchmarks import harness, report
from benchmarks.run import _merge, stem_for
from benchmarks.workloads import WORKLOADS, dense_flops

import bpjax as bp

# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    "xs, expected",
    [([3.0], 3.0), ([5.0, 1.0, 3.0], 3.0), ([4.0, 1.0, 2.0, 3.0], 2.5)],
)
def test_median(xs, expected):
    assert harness.median(xs) == expected


def test_median_of_nothing_raises():
    with pytest.raises(ValueError, match="median of no timings"):
        harness.median([])


@pytest.mark.parametrize("slow, fast, expected", [(6.0, 2.0, 3.0), (1.0, 4.0, 0.25), (1.0, 0.0, np.inf)])
def test_ratio(slow, fast, expected):
    assert harness.ratio(slow, fast) == expected


@pytest.mark.parametrize("s", [1.0, 1.5, 3.0])
def test_loglog_slope_recovers_the_exponent(s):
    x = np.array([10.0, 100.0, 1000.0, 5000.0])
    assert harness.loglog_slope(x, 7 * x**s) == pytest.approx(s)


def test_loglog_slope_needs_two_points():
    with pytest.raises(ValueError, match="need >= 2 points"):
        harness.loglog_slope([1.0], [1.0])


def test_round_orders_rotate_every_competitor_through_every_place():
    orders = harness.round_orders(["a", "b", "c"], 3)
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for place in range(3):
        assert sorted(o[place] for o in orders) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "t_call, min_time, expected", [(1.0, 0.0, 1), (0.5, 0.1, 1), (0.01, 0.1, 10), (1e-9, 1.0, 1000)]
)
def test_calls_for(t_call, min_time, expected):
    assert harness.calls_for(t_call, min_time) == expected


# --------------------------------------------------------------------------- interleaving


def _counting_factory(log):
    def make(name):
        def factory():
            log.append(("setup", name))
            return harness.Runner(lambda: log.append(("run", name)) or len(log),
                                  lambda out: {"last": float(out)})
        return factory
    return make


def test_interleave_sets_up_once_times_first_calls_then_rotates_rounds():
    log = []
    make = _counting_factory(log)
    t = harness.interleave({"a": make("a"), "b": make("b")}, repeats=3, log=lambda s: None)
    assert log[:2] == [("setup", "a"), ("setup", "b")]
    runs = [n for kind, n in log[2:]]
    assert runs == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]  # first calls, then 3 rounds
    assert len(t["a"].steady_s) == 3 and t["a"].first_s >= 0
    assert t["b"].summary == {"last": float(len(log))}  # finish() sees the last outcome
    d = t["a"].as_dict()
    assert d["steady_median_s"] == harness.median(d["steady_s"])
    assert d["compile_estimate_s"] == max(d["first_call_s"] - d["steady_median_s"], 0.0)


def test_interleave_batches_short_calls():
    count = {"n": 0}

    def factory():
        return harness.Runner(lambda: count.__setitem__("n", count["n"] + 1))

    harness.interleave({"x": factory}, repeats=2, log=lambda s: None, min_time_s=10.0)
    # first call + calibration call + 2 samples of the maximum 1000 calls each
    assert count["n"] == 2 + 2 * 1000


def test_interleave_needs_a_round():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        harness.interleave({}, repeats=0)


def test_probe_memory_reports_a_non_negative_growth():
    def factory():
        return harness.Runner(lambda: np.ones(4_000_000).sum())  # ~30 MiB, touched

    m = harness.probe_memory(factory)
    assert m["peak_rss_delta_mib"] >= 0
    assert m["peak_rss_mib"] >= m["rss_before_mib"] or "growth" in m["peak_rss_method"]


# --------------------------------------------------------------------------- report


@pytest.mark.parametrize(
    "measured, op, threshold, met",
    [(2.5, ">=", 2, True), (1.5, ">=", 2, False), (0.9, "<=", 1.0, True), (1.1, "<=", 1.0, False),
     (None, ">=", 2, None), (float("nan"), "<=", 1.0, None)],
)
def test_target(measured, op, threshold, met):
    assert report.target("t", measured, op, threshold, "×")["met"] is met


def test_target_rejects_unknown_op():
    with pytest.raises(ValueError, match="target op must be"):
        report.target("t", 1.0, "<", 1.0, "×")


def _result():
    timing = harness.Timing(first_s=1.2, steady_s=[0.5, 0.3, 0.4], summary={"final_loss": 0.125})
    base = harness.Timing(first_s=0.9, steady_s=[0.8, 0.8, 0.8], summary={"final_loss": 0.125})
    return {
        "environment": {
            "label": "cpu", "date_utc": "2026-01-01 00:00:00 UTC", "quick": True,
            "cpu": "Test CPU", "cpu_count": 2, "load_average_at_start": [1.0, 1.0, 1.0],
            "jax_devices": ["cpu:cpu"], "python": "3.11", "versions": {"jax": "0.10"},
        },
        "workloads": [
            {
                "key": "W9", "title": "a test", "status": "ok", "config": {"sizes": (2, 3, 1)},
                "reference": "fast",
                "competitors": {"fast": timing.as_dict(), "slow": base.as_dict()},
                "ratios": {"fast": 1.0, "slow": 2.0},
                "checks": [{"name": "same work", "ok": True, "detail": "agree"}],
                "targets": [report.target("speed-up", 2.0, ">=", 2, "×")],
                "notes": ["a note"],
            },
            {"key": "W8", "title": "skipped one", "status": "skipped", "note": "needs bp.fit",
             "targets": [report.target("speed-up", None, ">=", 8, "×")]},
        ],
    }


def test_markdown_has_the_targets_and_a_row_per_competitor():
    md = report.to_markdown(_result())
    assert "| W9 | speed-up | 2× | >= 2× | **met** |" in md
    assert "| W8 | speed-up | — | >= 8× | not run |" in md
    assert "| **fast** | " in md and "| slow | " in md
    assert "config: sizes=2-3-1" in md
    assert "**skipped**: needs bp.fit" in md
    assert "check *same work*: ok" in md


def test_only_the_workloads_kept_from_an_earlier_run_are_labelled_merged(tmp_path):
    earlier = _result()
    earlier["workloads"][0]["date_utc"] = "2025-12-31 00:00:00 UTC"
    report.write(earlier, tmp_path, "results")
    now = _result()
    now["workloads"] = [now["workloads"][1] | {"date_utc": "2026-01-01 00:05:00 UTC"}]  # W8
    merged = _merge(tmp_path / "results.json", now)
    md = report.to_markdown(merged)
    assert [w["key"] for w in merged["workloads"]] == ["W8", "W9"]
    assert "run at 2025-12-31 00:00:00 UTC (merged from an earlier run)" in md
    assert "run at 2026-01-01 00:05:00 UTC\n" in md  # run now, not merged


def test_write_is_atomic_and_round_trips(tmp_path):
    pj, pm = report.write(_result(), tmp_path, "results-x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results-x.json", "results-x.md"]
    back = json.loads(pj.read_text())
    assert back["workloads"][0]["competitors"]["fast"]["steady_median_s"] == 0.4
    assert back["workloads"][1]["targets"][0]["met"] is None
    assert pm.read_text().startswith("# bpjax benchmarks — cpu")


@pytest.mark.parametrize(
    "label, quick, stem",
    [("cpu", False, "results"), ("cpu", True, "results-quick"),
     ("gpu-nvidia-h200", False, "results-gpu-nvidia-h200")],
)
def test_results_file_names(label, quick, stem):
    assert stem_for(label, quick) == stem


@pytest.mark.parametrize(
    "v, text", [(None, "—"), (0.0, "0"), (1234.5, "1,234"), (2.0, "2"), (0.01234, "0.0123"),
                (1.5e-5, "1.50e-05"), ((784, 512, 10), "784-512-10"), (True, "yes")],
)
def test_fmt(v, text):
    assert report.fmt(v) == text


# --------------------------------------------------------------------------- workloads


def test_dense_flops_by_hand():
    # sizes 2-3-1, N = 4: MACs per sample 2·3 = 6 and 3·1 = 3.
    # forward 2·4·(6+3) = 72, weight gradients 72 again, δ back into layer 1: 2·4·3 = 24.
    assert dense_flops((2, 3, 1), 4) == 72 + 72 + 24


def test_every_workload_has_its_targets_even_when_skipped():
    keys = {w: [t["name"] for t in WORKLOADS[w].skipped_targets()] for w in WORKLOADS}
    assert [len(keys[k]) for k in ("W1", "W2", "W3", "W4", "W5")] == [3, 1, 1, 1, 0]


# --------------------------------------------------------------------------- baselines

NET = bp.Network(inputs=3, layers=[bp.Layer(4, "tanh"), bp.Layer(2, "identity")])


def _reference_sgd(params, X, Y, lr, epochs):
    """Algorithm 1 in float64 with jax.grad of the per-sample loss ½‖φ_θ(x_i) − y_i‖²."""
    def sample_loss(p, x, y):
        r = B.jax_mlp_forward(p, x) - y
        return 0.5 * jnp.sum(r * r)

    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    for _ in range(epochs):
        for x, y in zip(X, Y):
            g = jax.grad(sample_loss)(mlp, x, y)
            mlp = [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(mlp, g)]
    return mlp


@pytest.fixture(scope="module")
def sgd_case():
    params = bp.init(NET, jax.random.key(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    lr = 0.3 / 5
    return params, X, Y, lr, _reference_sgd(params, X, Y, lr, epochs=2)


def _assert_mlp_close(got, want):
    for (W, b), (W0, b0) in zip(got, want):
        np.testing.assert_allclose(np.asarray(W), np.asarray(W0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(b), np.asarray(b0), rtol=1e-10, atol=1e-12)


def test_numpy_loop_is_algorithm_1(sgd_case):
    params, X, Y, lr, want = sgd_case
    _assert_mlp_close(B.numpy_sgd(B.to_mlp(params), X, Y, lr, 2), want)


def test_jax_scan_baseline_is_algorithm_1(sgd_case):
    params, X, Y, lr, want = sgd_case
    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    got, losses = B.jax_mlp_scan_train(mlp, jnp.asarray(X), jnp.asarray(Y), lr, 2)
    _assert_mlp_close(got, want)
    assert float(losses[-1]) == pytest.approx(B.mlp_loss_np(want, X, Y), rel=1e-10)


def test_torch_baseline_is_algorithm_1(sgd_case):
    torch = pytest.importorskip("torch")
    params, X, Y, lr, want = sgd_case
    torch.set_default_dtype(torch.float64)
    try:
        model = B.torch_model(B.to_mlp(params))
        B.torch_sgd(model, torch.from_numpy(X), torch.from_numpy(Y), lr, 2)
    finally:
        torch.set_default_dtype(torch.float32)
    _assert_mlp_close(B.torch_to_mlp(model), want)


def test_sklearn_baseline_is_algorithm_1():
    pytest.importorskip("sklearn")
    net = bp.Network(inputs=3, layers=[bp.Layer(4, "tanh"), bp.Layer(1, "identity")])
    params = bp.init(net, jax.random.key(1), dtype=jnp.float64)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    lr = 0.05
    m = B.sklearn_model(B.to_mlp(params), X, Y.ravel(), lr)
    for _ in range(2):
        m.partial_fit(X, Y.ravel())
    _assert_mlp_close(B.sklearn_to_mlp(m), _reference_sgd(params, X, Y, lr, epochs=2))


def test_quadratic_baseline_is_the_papers_network():
    net = bp.Network(inputs=2, layers=[bp.Layer(2, ("identity", "square")),
                                       bp.Layer(1, "identity", bias=False)])
    params = bp.init(net, jax.random.key(2), dtype=jnp.float64)
    params = (params[0].at[0].set(jnp.array([0.3, -0.2])), params[1])
    X = np.random.default_rng(2).standard_normal((6, 2))
    got = B.quadratic_forward([(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)], X)
    np.testing.assert_allclose(np.asarray(got), np.asarray(bp.forward(net, params, X)), rtol=1e-12)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_the_minibatch_baseline_takes_the_steps_of_fit(opt):
    # jax.grad + optax in lax.scan (benchmarks/minibatch_grid.py) against bp.fit, float64: the
    # same weights after every batch, the same loss (1) after every epoch.
    import optax
    from benchmarks import minibatch_grid as G

    layers = [(4, ("tanh", "relu", "logistic", "softplus")), (2, "identity")]
    net = G.network(3, layers)
    params = bp.init(net, jax.random.key(0), dtype=jnp.float64)
    X, Y = G._data(8, 3, 2, "float64", seed=0)
    optimizer = optax.adam(1e-2) if opt == "adam" else optax.sgd(0.5)
    from benchmarks.baselines import jax_mlp

    train = G.plain_trainer(jax_mlp([act for _, act in layers]), optimizer, 8, 4, 3)
    mlp = [(w[1:], w[0]) for w in params]
    (out, _), losses = train(mlp, optimizer.init(mlp), jnp.asarray(X), jnp.asarray(Y))
    kwargs = dict(optimizer=optimizer) if opt == "adam" else dict(learning_rate=0.5)
    r = bp.fit(net, params, X, Y, batch_size=4, epochs=3, **kwargs)
    _assert_mlp_close([(w[1:], w[0]) for w in r.params], out)
    np.testing.assert_allclose(r.losses, losses, rtol=1e-10)


def test_the_minibatch_grid_covers_the_issues_cells_and_its_ranges():
    from benchmarks import minibatch_grid as G

    cfg = G.config(False)
    cells = G.cells(cfg)
    assert len(cfg["shapes"]) >= 8 and {16, 64, 256} <= set(cfg["batch_sizes"])
    assert {(0, 32, "adam"), (1, 64, "adam"), (2, 128, "adam")} <= set(cells)
    widths = [n for _, _, layers, _ in G.SHAPES for n, _ in layers]
    assert min(widths) <= 2 and max(widths) >= 512
    assert {len(layers) for _, _, layers, _ in G.SHAPES} >= {1, 2, 3, 5}
    assert {dtype for *_, dtype in G.SHAPES} == {"float32", "float64"}
    assert any(not isinstance(act, str) for _, _, layers, _ in G.SHAPES for _, act in layers)


def test_numpy_loop_with_every_activation_and_a_mix_is_algorithm_1():
    # the grid's numpy competitor: derivatives written from (a, φ); checked against bp.fit
    # (batch_size=1, float64) on every activation it knows and a per-neuron mix
    acts = (("tanh", "logistic", "relu", "softplus", "square", "identity"), "logistic",
            "identity")
    net = bp.Network(3, [bp.Layer(6, acts[0]), bp.Layer(4, acts[1]), bp.Layer(2, acts[2])])
    params = bp.init(net, jax.random.key(1), dtype=jnp.float64)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    r = bp.fit(net, params, X, Y, learning_rate=0.3, epochs=2)
    got = B.numpy_sgd(B.to_mlp(params), X, Y, 0.3 / 6, 2, activations=acts)
    _assert_mlp_close(got, B.to_mlp(r.params))
    np.testing.assert_allclose(B.mlp_loss_np(got, X, Y, activations=acts), r.losses[-1],
                               rtol=1e-10)
