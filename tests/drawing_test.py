"""Drawing networks: one line per existing connection, skips curved, the green path."""

import sys

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle  # noqa: E402

import bpjax as bp  # noqa: E402
from bpjax.drawing import HIGHLIGHT  # noqa: E402
from conftest import DAG_NETS  # noqa: E402

FIG2 = bp.Network(2, [bp.Layer(2, ("identity", "square")), bp.Layer(1, "identity", bias=False)])
FEEDFORWARD = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(3, "relu"), bp.Layer(2, "identity")])
NETS = {"figure_2": FIG2, "feedforward": FEEDFORWARD, **DAG_NETS}


def _edges(fig):
    """gid → patch for every drawn connection."""
    (ax,) = fig.axes
    return {p.get_gid(): p for p in ax.patches
            if isinstance(p, FancyArrowPatch) and (p.get_gid() or "").startswith("w^")}


def _existing(net):
    return {f"w^{l}_({j},{k + 1})" for l in range(1, net.depth + 1)
            for j, k in zip(*net.structure(l).nonzero())}


def _green(fig):
    return {gid for gid, p in _edges(fig).items() if to_hex(p.get_edgecolor()) == HIGHLIGHT}


@pytest.mark.parametrize("name", sorted(NETS))
def test_one_line_per_existing_connection(name):
    net = NETS[name]
    fig = bp.draw_network(net)
    edges = _edges(fig)
    assert len(edges) == net.num_params  # structural zeros are not drawn
    assert set(edges) == _existing(net)
    (ax,) = fig.axes
    nodes = [p for p in ax.patches if (p.get_gid() or "").startswith("node(")]
    assert len(nodes) == sum(net.sizes)
    assert sum(isinstance(p, Rectangle) for p in nodes) == net.inputs  # x as squares
    assert sum(isinstance(p, Circle) for p in nodes) == sum(net.sizes[1:])
    bias_nodes = {p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("bias(")}
    assert bias_nodes == {f"bias({l})" for l in range(1, net.depth + 1) if net.layer(l).bias}
    assert not _green(fig)


def test_skip_connections_are_curved():
    net = DAG_NETS["fan_out"]  # layer 4 reads layers 1, 2 and 3; layer 3 reads layer 1
    edges = _edges(bp.draw_network(net))
    for l in range(1, net.depth + 1):
        for s, rows in net.blocks(l):
            for j in range(rows.start, rows.stop):
                rad = edges[f"w^{l}_({j},1)"].get_connectionstyle().rad
                assert (rad != 0) == (s < l - 1), (l, j, s)


def test_figure_2_green_path():
    # the paper's figure 2: ∂L/∂w^1_21 follows x[2] → (1,1) → (2,1): the lines w^1_(2,1), w^2_(1,1)
    fig = bp.draw_network(FIG2, highlight=(1, 2, 1))
    assert _green(fig) == {"w^1_(2,1)", "w^2_(1,1)"}
    (ax,) = fig.axes
    lit = {p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("node(")
           and to_hex(p.get_edgecolor()) == HIGHLIGHT}
    assert lit == {"node(0,2)", "node(1,1)", "node(2,1)"}
    assert "w^{1}_{2,1}" in ax.get_title() and "1 path" in ax.get_title()


@pytest.mark.parametrize("name, weight, output", [
    ("fan_out", (1, 2, 1), None),
    ("masked_skip", (1, 3, 1), None),
    ("masked_skip", (2, 1, 1), 2),
    ("x_to_output", (1, 0, 3), 1),
    ("dead_layer", (1, 1, 2), None),  # no path: only the weight's own line is green
])
def test_highlight_draws_the_weights_paths(name, weight, output):
    net = NETS[name]
    fig = bp.draw_network(net, highlight=weight, output=output)
    m, p, r = weight
    expected = {f"w^{m}_({p},{r})"}
    for path in bp.weight_paths(net, weight, output):
        for (s, i), (l, k) in zip(path, path[1:]):
            expected.add(f"w^{l}_({dict(net.blocks(l))[s].start + i - 1},{k})")
    assert _green(fig) == expected
    assert len(_edges(fig)) == net.num_params


def test_draws_into_a_given_axes_and_saves(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert bp.draw_network(FIG2, ax=ax2, label_weights=True, title="fig 2") is fig
    assert ax2.get_title() == "fig 2" and not ax1.patches
    labels = {t.get_text() for t in ax2.texts if t.get_text().startswith("$w^")}
    assert labels == {"$w^{1}_{0,1}$", "$w^{1}_{1,1}$", "$w^{1}_{2,1}$", "$w^{1}_{0,2}$",
                      "$w^{1}_{1,2}$", "$w^{1}_{2,2}$", "$w^{2}_{1,1}$", "$w^{2}_{2,1}$"}
    out = tmp_path / "net.png"
    bp.draw_network(DAG_NETS["masked_skip"], highlight=(1, 3, 1)).savefig(out)
    assert out.stat().st_size > 1000


def test_missing_matplotlib_is_a_clear_import_error(monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"needs matplotlib.*pip install matplotlib"):
        bp.draw_network(FIG2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(net="net"), TypeError, r"draw_network expects a bpjax.Network, got str"),
    (dict(highlight=(1, 5, 1)), ValueError, r"weight w\^1_\(5,1\) is not in the network"),
    (dict(highlight=(1, 1, 1), output=2), ValueError, r"output neuron k must be an int in 1..1"),
    (dict(output=1), ValueError, r"output= selects the highlighted paths: pass highlight"),
    (dict(ax="left"), TypeError, r"ax must be a matplotlib Axes, got str: 'left'"),
    (dict(figsize=(4, -1)), ValueError, r"figsize must be \(width, height\) in inches, two "
                                        r"numbers > 0, got \(4, -1\)"),
    (dict(figsize="big"), ValueError, r"figsize must be \(width, height\).*got 'big'"),
])
def test_bad_arguments(kwargs, error, message):
    net = kwargs.pop("net", FIG2)
    with pytest.raises(error, match=message):
        bp.draw_network(net, **kwargs)


def test_importing_bpjax_does_not_import_matplotlib():
    import subprocess

    code = "import sys, bpjax; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- large layers in summary, with a size guard ---------------------------------------------------

MNIST = bp.Network(784, [bp.Layer(512, "relu"), bp.Layer(10, "identity")])


def _nodes(fig, kind="node("):
    (ax,) = fig.axes
    return {p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith(kind)}


def test_a_784_512_10_network_is_drawn_in_summary():
    fig = bp.draw_network(MNIST)
    edges = _edges(fig)
    assert set(edges) <= _existing(MNIST) and 0 < len(edges) <= 3000
    nodes = _nodes(fig)
    per_column = [sum(g.startswith(f"node({l},") for g in nodes) for l in range(3)]
    assert per_column == [11, 11, 10]  # 12 slots: 11 neurons and the gap; d = 10 whole
    assert _nodes(fig, "gap(") == {"gap(0,7)", "gap(1,7)"}
    (ax,) = fig.axes
    texts = {t.get_text() for t in ax.texts}
    assert {"773 more", "501 more", "⋮"} <= texts
    assert any("N_0 = 784 (11 drawn)" in t for t in texts)
    assert all(side <= 40 for side in fig.get_size_inches())
    # every connection between two neurons drawn is drawn, bias included
    assert len(edges) == 11 * (1 + 11) + 10 * (1 + 11)


def test_a_highlight_in_a_summarised_layer_keeps_its_neurons():
    fig = bp.draw_network(MNIST, highlight=(1, 300, 200))
    assert {"node(0,300)", "node(1,200)"} <= _nodes(fig)
    assert _green(fig) == {"w^1_(300,200)", *{f"w^2_(200,{k})" for k in range(1, 11)}}
    assert "10 paths" in fig.axes[0].get_title()
    deep = bp.Network(784, [bp.Layer(512, "relu")] * 3 + [bp.Layer(10, "identity")])
    title = bp.draw_network(deep, highlight=(1, 1, 1), output=3).axes[0].get_title()
    assert f"{512 * 512} paths" in title  # counted, not listed


def test_small_layers_are_drawn_whole_unless_asked():
    assert len(_edges(bp.draw_network(FEEDFORWARD))) == FEEDFORWARD.num_params
    fig = bp.draw_network(FEEDFORWARD, max_neurons=3)
    assert _nodes(fig, "gap(") == {"gap(1,2)"} and len(_edges(fig)) < FEEDFORWARD.num_params


def test_the_size_guard_summarises_deep_networks_further_then_refuses():
    deep = bp.Network(3, [bp.Layer(12, "tanh")] * 40 + [bp.Layer(1, "identity")])
    fig = bp.draw_network(deep)
    assert len(_edges(fig)) <= 3000 and all(side <= 40 for side in fig.get_size_inches())
    with pytest.raises(ValueError, match=r"would draw \d+ connections even with every column "
                                         r"summarised to 3 neurons, more than "
                                         r"max_connections=100"):
        bp.draw_network(deep, max_connections=100)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_neurons=2), r"max_neurons must be an int >= 3, got 2"),
    (dict(max_neurons=5.0), r"max_neurons must be an int >= 3, got 5.0"),
    (dict(max_connections=0), r"max_connections must be an int >= 1, got 0"),
])
def test_bad_size_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bp.draw_network(FIG2, **kwargs)


# --- numbers on the drawing: values on neurons, weights or gradients on connections ---------------

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from bpjax.drawing import NEGATIVE, POSITIVE  # noqa: E402

W1 = np.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 3.0]])  # the hand-worked figure 2 of
W2 = np.array([[0.0], [2.0], [-3.0]])  # tests/paper_example_test.py and explain_test.py
FIG2_PARAMS = (jnp.asarray(W1), jnp.asarray(W2))
X2 = np.array([1.0, 2.0])


def _values(fig):
    (ax,) = fig.axes
    return {t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("value(")}


def test_gradients_on_edges_width_by_magnitude_colour_by_sign():
    # ∂L/∂w(x) = ∂φ_θ/∂w (φ − y) with the paper's ∂φ_θ/∂w (§1.3.1); φ = -88.75, y = 1
    r = -89.75
    a2 = 5.5
    expected = {"w^1_(0,1)": 2 * r, "w^1_(1,1)": 2 * 1 * r, "w^1_(2,1)": 2 * 2 * r,
                "w^1_(0,2)": 2 * -3 * a2 * r, "w^1_(1,2)": 2 * -3 * 1 * a2 * r,
                "w^1_(2,2)": 2 * -3 * 2 * a2 * r, "w^2_(1,1)": 1.0 * r, "w^2_(2,1)": a2**2 * r}
    fig = bp.draw_network(FIG2, params=FIG2_PARAMS, x=X2, y=1.0, nodes="delta", edges="grad")
    edges = _edges(fig)
    assert set(edges) == set(expected)
    largest = max(abs(v) for v in expected.values())
    for gid, v in expected.items():
        patch = edges[gid]
        assert to_rgb(patch.get_edgecolor()) == to_rgb(POSITIVE if v > 0 else NEGATIVE), gid
        assert patch.get_linewidth() == pytest.approx(0.5 + 5.5 * abs(v) / largest), gid
    (ax,) = fig.axes
    labels = {t.get_text() for t in ax.texts}
    assert r"$\partial\mathcal{L}/\partial w^{1}_{2,1}$ = -359" in labels  # the green path's gradient, w^2_11 x[2] (φ − y)
    # δ on the neurons: δ^2_1 = φ − y, δ^1_1 = w^2_11 δ^2_1, δ^1_2 = 2 a^1_2 w^2_21 δ^2_1
    assert _values(fig) == {"value(2,1)": "-89.75", "value(1,1)": "-179.5",
                            "value(1,2)": "2962"}
    key = next(t.get_text() for t in ax.texts if t.get_gid() == "key")
    assert "delta" in key and "partial" in key and "x = (1, 2), y = (1)" in key


def test_values_on_neurons_and_weights_on_edges():
    fig = bp.draw_network(FIG2, params=FIG2_PARAMS, x=X2, nodes="phi", edges="w")
    # φ^0 = x, φ^1 = (a^1_1, (a^1_2)²) = (1, 30.25), φ^2 = -88.75 (equation (6), by hand)
    assert _values(fig) == {"value(0,1)": "1", "value(0,2)": "2", "value(1,1)": "1",
                            "value(1,2)": "30.25", "value(2,1)": "-88.75"}
    edges = _edges(fig)
    assert to_rgb(edges["w^2_(2,1)"].get_edgecolor()) == to_rgb(NEGATIVE)  # w^2_21 = -3
    assert edges["w^1_(2,2)"].get_linewidth() == pytest.approx(6.0)  # |w^1_22| = 3, the largest
    (ax,) = fig.axes
    nodes = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("node(")}
    assert to_rgb(nodes["node(2,1)"].get_facecolor()) != (1.0, 1.0, 1.0)  # filled by sign
    fig = bp.draw_network(FIG2, params=FIG2_PARAMS, x=X2, nodes="a")
    assert _values(fig) == {"value(1,1)": "1", "value(1,2)": "5.5", "value(2,1)": "-88.75"}


def test_clamped_weights_are_dotted_and_named():
    params, frozen = bp.clamp(FIG2, FIG2_PARAMS, {(1, 0, 2): 0.0, (2, 1, 1): 1.0})
    fig = bp.draw_network(FIG2, params=params, edges="w", frozen=frozen)
    edges = _edges(fig)
    dotted = {gid for gid, p in edges.items() if p.get_linestyle() == ":"}
    assert dotted == {"w^1_(0,2)", "w^2_(1,1)"}
    (ax,) = fig.axes
    assert sum("(clamped)" in t.get_text() for t in ax.texts) == 2


@pytest.mark.parametrize("name", sorted(NETS))
def test_numbers_on_every_network(name):
    import jax

    net = NETS[name]
    params = bp.init(net, jax.random.key(0))
    x, y = np.linspace(-1, 1, net.inputs), np.linspace(0, 1, net.outputs)
    fig = bp.draw_network(net, params=params, x=x, y=y, nodes="delta", edges="grad")
    assert len(_edges(fig)) == net.num_params
    step = bp.explain(net, params, x, y)
    for l in range(1, net.depth + 1):
        for k in range(1, net.sizes[l] + 1):
            assert _values(fig)[f"value({l},{k})"] == f"{float(step.delta[l][k - 1]):.4g}"


def test_a_summarised_network_carries_numbers_on_what_is_drawn():
    import jax

    params = bp.init(MNIST, jax.random.key(0))
    fig = bp.draw_network(MNIST, params=params, x=np.ones(784), nodes="phi", edges="w")
    assert len(_values(fig)) == 11 + 11 + 10 and _nodes(fig, "gap(") == {"gap(0,7)", "gap(1,7)"}
    assert all(side <= 40 for side in fig.get_size_inches())


@pytest.mark.parametrize("kwargs, message", [
    (dict(nodes="phi"), r"nodes='phi' needs params="),
    (dict(params=FIG2_PARAMS, nodes="phi"), r"nodes='phi' needs x="),
    (dict(params=FIG2_PARAMS, x=X2, nodes="delta"), r"nodes='delta' needs y="),
    (dict(params=FIG2_PARAMS, x=X2, edges="grad"), r"edges='grad' needs y="),
    (dict(params=FIG2_PARAMS, nodes="psi"), r"nodes must be one of 'a', 'phi', 'delta'"),
    (dict(params=FIG2_PARAMS, edges="weights"), r"edges must be one of 'w', 'grad'"),
    (dict(params=FIG2_PARAMS), r"params=, x= and y= are the numbers drawn: pass nodes="),
    (dict(params=FIG2_PARAMS, edges="w", frozen=(np.zeros(3, bool),)), r"frozen has 1 layers"),
    (dict(params=(np.ones((2, 2)), np.ones((3, 1))), edges="w"), r"params\[0\] \(layer 1\)"),
])
def test_bad_number_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bp.draw_network(FIG2, **kwargs)


def test_a_fixed_edge_scale_and_digits():
    fig = bp.draw_network(FIG2, params=FIG2_PARAMS, edges="w", edge_scale=6.0, digits=2)
    edges = _edges(fig)
    assert edges["w^1_(2,2)"].get_linewidth() == pytest.approx(0.5 + 5.5 * 3 / 6)  # |w| = 3
    (ax,) = fig.axes
    assert "$w^{1}_{1,2}$ = 0.5" in {t.get_text() for t in ax.texts}
    with pytest.raises(ValueError, match="edge_scale"):
        bp.draw_network(FIG2, params=FIG2_PARAMS, edges="w", edge_scale=0.0)
    with pytest.raises(ValueError, match="digits"):
        bp.draw_network(FIG2, params=FIG2_PARAMS, edges="w", digits=0)


@pytest.mark.parametrize("loss, activation, y, y_text", [
    ("softmax_cross_entropy", "identity", 1, "y = (0, 1)"),  # a class label, drawn one-hot
    ("binary_cross_entropy", "logistic", [1.0, 0.0], "y = (1, 0)"),
])
def test_numbers_with_a_classification_loss(loss, activation, y, y_text):
    import jax

    net = bp.Network(3, [bp.Layer(4, "tanh"), bp.Layer(2, activation)])
    params = bp.init(net, jax.random.key(1))
    x = np.array([0.5, -1.0, 2.0])
    fig = bp.draw_network(net, params=params, x=x, y=y, nodes="delta", edges="grad",
                          loss=loss, label_weights=False)
    step = bp.explain(net, params, x, y, loss=loss)
    grads = bp.backprop(net, params, x, y, loss=loss)
    largest = max(float(np.abs(g).max()) for g in grads)
    for gid, patch in _edges(fig).items():
        l, j, k = int(gid[2]), *map(int, gid[5:-1].split(","))
        g = float(grads[l - 1][j, k - 1])
        assert patch.get_linewidth() == pytest.approx(0.5 + 5.5 * abs(g) / largest), gid
    for l in range(1, net.depth + 1):
        for k in range(1, net.sizes[l] + 1):
            assert _values(fig)[f"value({l},{k})"] == f"{float(step.delta[l][k - 1]):.4g}"
    (ax,) = fig.axes
    key = next(t.get_text() for t in ax.texts if t.get_gid() == "key")
    assert f"{y_text}, {loss} loss" in key
