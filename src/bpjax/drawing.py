"""Drawing a network, DAGs included, in the style of the paper's figure 2.

| figure 2                               | :func:`draw_network`                              |
| -------------------------------------- | ------------------------------------------------- |
| input nodes ``φ^0_k = x[k]`` (squares) | column 0, squares labelled ``x[k]``               |
| neuron ``(l, k)`` with its ``φ^l_k``   | column ``l``, a circle labelled by its activation |
| the bias input ``φ^{l-1}_0 = 1``       | a square ``1`` atop column ``l-1`` if ``l`` has a bias |
| the connections ``w^l_jk``             | one line per existing connection; skips curve    |
| the green path of ``∂L/∂w^1_21``       | ``highlight=(1, 2, 1)``                           |
| ``a^l_k``, ``φ^l_k``, ``δ^l_k`` at ``x_i`` | ``nodes="a"``, ``"phi"``, ``"delta"``, by sign |
| ``w^l_jk`` or ``∂L/∂w^l_jk(x_i)``      | ``edges="w"``, ``"grad"``: width and colour        |

With numbers (``params=``, and the sample ``x=``, ``y=`` for values that need them) the
drawing follows TensorFlow Playground's convention: blue for positive values, orange for
negative ones, and a line's width proportional to its magnitude. The numbers come from
:func:`bpjax.explain` (one sample's forward and hand-written backward pass) or, for weights
alone, from ``params`` itself.

matplotlib is an optional dependency (the ``experiments`` extra); it is imported when
:func:`draw_network` is called. No pyplot state is touched: the figure is a plain
``matplotlib.figure.Figure`` unless an ``ax`` is given.
"""

from __future__ import annotations

import numpy as np

from bpjax.arguments import number
from bpjax.clamping import check_frozen
from bpjax.explain import explain
from bpjax.forward import forward_trace
from bpjax.network import Network, check_network
from bpjax.params import check_params, structural
from bpjax.paths import check_output, check_weight, source

__all__ = ["draw_network"]

HIGHLIGHT = "#2ca02c"  # the paper's green path
EDGE = "#9a9a9a"
POSITIVE = "#0877bd"  # TensorFlow Playground's blue
NEGATIVE = "#e8710a"  # and its orange
NODE_VALUES = {"a": r"a^l_k", "phi": r"\varphi^l_k",
               "delta": r"\delta^l_k = \partial\mathcal{L}/\partial a^l_k"}
EDGE_VALUES = {"w": r"w^l_{jk}", "grad": r"\partial\mathcal{L}/\partial w^l_{jk}"}
_SHORT = {"identity": "z", "square": "z²", "logistic": "σ", "tanh": "tanh", "relu": "ReLU",
          "softplus": "soft+"}


def _import_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle, FancyArrowPatch, Rectangle
    except ImportError as e:
        raise ImportError(
            "bpjax.draw_network needs matplotlib, which is not installed: "
            "pip install matplotlib (or pip install 'bpjax[experiments]')"
        ) from e
    return Figure, Circle, FancyArrowPatch, Rectangle


def _weight_tex(l: int, j: int, k: int) -> str:
    return f"$w^{{{l}}}_{{{j},{k}}}$"


def _skip_rad(src, dst, obstacles):
    """The curvature (matplotlib's ``arc3`` ``rad``) of a skip connection: the gentlest bow
    that clears the nodes of the columns it jumps over, or the one that clears them most.
    Returns ``(rad, lowest y, highest y)`` of the curve."""
    import numpy as np

    t = np.linspace(0.0, 1.0, 41)[:, None]
    best = None
    for rad in (0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6):
        curve = np.array(_on_curve(src, dst, rad, t)).T[0]  # (41, 2)
        clearance = min((np.hypot(*(curve - o).T).min() for o in obstacles), default=np.inf)
        found = (rad, float(curve[:, 1].min()), float(curve[:, 1].max()))
        if clearance >= 0.6:
            return found
        if best is None or clearance > best[0]:
            best = (clearance, found)
    return best[1]


def _on_curve(src, dst, rad: float, t: float) -> tuple[float, float]:
    """The point at ``t ∈ [0, 1]`` of matplotlib's ``arc3`` curve from ``src`` to ``dst``."""
    (x1, y1), (x2, y2) = src, dst
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    u = 1 - t
    return u * u * x1 + 2 * t * u * cx + t * t * x2, u * u * y1 + 2 * t * u * cy + t * t * y2


def _shown(net: Network, max_neurons: int, keep) -> list[list[int]]:
    """The neurons ``k`` drawn in each column ``l = 0..L``: all of them when the layer has at
    most ``max_neurons``, else the first and the last few (``max_neurons - 1`` in all, the
    last slot for the gap) and those in ``keep`` (the highlighted weight's own neurons)."""
    out = []
    for l, n in enumerate(net.sizes):
        if n <= max_neurons:
            out.append(list(range(1, n + 1)))
            continue
        head = max_neurons // 2
        tail = max(max_neurons - 1 - head, 1)
        ks = {*range(1, head + 1), *range(n - tail + 1, n + 1)}
        ks |= {k for (m, k) in keep if m == l}
        out.append(sorted(ks))
    return out


def _layout(net: Network, dx: float, shown):
    """Node centres: ``pos[(l, k)]`` for the neurons drawn and inputs (``l = 0``), ``bias[l]``
    for the bias node of layer ``l`` (drawn atop column ``l-1``), and ``gaps[(l, i)] =
    (centre, how many)`` for each run of neurons a summarised column leaves out."""
    L = net.depth
    slots = []
    for l in range(L + 1):
        ks = shown[l]
        n_gaps = sum(1 for a, b in zip([0, *ks], [*ks, net.sizes[l] + 1]) if b - a > 1)
        slots.append(len(ks) + n_gaps + (1 if l < L and net.layer(l + 1).bias else 0))
    tallest = max(slots)  # bias nodes sit a little above their column when there is room
    pos, bias, gaps = {}, {}, {}
    for l in range(L + 1):
        top = (slots[l] - 1) / 2
        y = top
        if l < L and net.layer(l + 1).bias:
            bias[l + 1] = (l * dx, y + 0.1 * (tallest > 1))
            y -= 1
        previous = 0
        for k in [*shown[l], net.sizes[l] + 1]:
            if k - previous > 1:  # a run of neurons left out: one gap node
                gaps[(l, previous + 1)] = ((l * dx, y), k - previous - 1)
                y -= 1
            if k <= net.sizes[l]:
                pos[(l, k)] = (l * dx, y)
                y -= 1
            previous = k
    return pos, bias, gaps


def _lit(net: Network, weight, k_out):
    """The neurons and connections on the chain-rule paths from ``w^m_pr`` to the outputs
    (``k_out``, or all of them), and the number of paths — by reachability, so that a wide
    network costs a few matrix products rather than a walk over every path."""
    m, p, r = weight
    L = net.depth
    ahead = [np.zeros(n, bool) for n in net.sizes]  # reachable from neuron (m, r)
    ahead[m][r - 1] = True
    paths = [np.zeros(n) for n in net.sizes]  # how many paths from (m, r) reach each neuron
    paths[m][r - 1] = 1.0
    for l in range(m + 1, L + 1):
        for s, rows in net.blocks(l):
            w = net.structure(l)[rows]
            ahead[l] |= ahead[s] @ w > 0
            paths[l] += paths[s] @ w
    behind = [np.zeros(n, bool) for n in net.sizes]  # reaches an output wanted
    behind[L][:] = True if k_out is None else np.arange(1, net.outputs + 1) == k_out
    for l in range(L, 0, -1):
        for s, rows in net.blocks(l):
            behind[s] |= net.structure(l)[rows] @ behind[l] > 0
    on = [a & b for a, b in zip(ahead, behind)]
    total = paths[L].sum() if k_out is None else paths[L][k_out - 1]
    if not net.structure(m)[p, r - 1]:
        on, total = [np.zeros(n, bool) for n in net.sizes], 0.0
    return on, total


def _numbers(net: Network, params, x, y, nodes, edges, frozen, loss):
    """The values drawn: per layer ``l = 0..L`` the nodes' (or None), per layer ``l = 1..L``
    the connections' (or None), the clamps, and a caption naming the sample."""
    if nodes is not None and nodes not in NODE_VALUES:
        raise ValueError(f"nodes must be one of {', '.join(map(repr, NODE_VALUES))} (the values "
                         f"written on the neurons), got {nodes!r}")
    if edges is not None and edges not in EDGE_VALUES:
        raise ValueError(f"edges must be one of {', '.join(map(repr, EDGE_VALUES))} (the values "
                         f"drawn on the connections), got {edges!r}")
    wanted = [v for v in (nodes, edges) if v is not None]
    needs_x = nodes is not None or edges == "grad"
    needs_y = nodes == "delta" or edges == "grad"
    for name, value, needed in (("params", params, bool(wanted)), ("x", x, needs_x),
                                ("y", y, needs_y)):
        if needed and value is None:
            what = " and ".join(f"{k}={v!r}" for k, v in (("nodes", nodes), ("edges", edges))
                                if v is not None)
            raise ValueError(f"{what} needs {name}= (the weights, and the sample x and its "
                             f"target y for a, φ, δ and ∂L/∂w)")
    frozen = check_frozen(net, frozen)
    if not wanted:
        if params is not None or x is not None or y is not None:
            raise ValueError("params=, x= and y= are the numbers drawn: pass nodes= "
                             "('a', 'phi' or 'delta') and/or edges= ('w' or 'grad') too")
        return None, None, frozen, ""
    node_values = edge_values = None
    if needs_y:
        step = explain(net, params, x, y, loss=loss)
        y = step.y  # one-hot for a class label
        trace, weights = step, step.params
        if nodes == "delta":
            node_values = step.delta
        if edges == "grad":
            edge_values = step.grads
    else:
        weights = check_params(net, params)
        trace = forward_trace(net, params, x) if nodes is not None else None
    if nodes in ("a", "phi"):
        node_values = getattr(trace, nodes)
    if edges == "w":
        edge_values = structural(net, weights)
    as_np = lambda tree: None if tree is None else [None if v is None else np.asarray(v)
                                                    for v in tree]
    caption = ""
    if needs_x:
        caption = "x = (" + ", ".join(f"{v:.3g}" for v in np.ravel(x)) + ")"
    if needs_y:
        caption += (", y = (" + ", ".join(f"{v:.3g}" for v in np.ravel(y)) + ")"
                    + f", {step.loss_name} loss")
    return as_np(node_values), as_np(edge_values), frozen, caption


def _tint(colour: str, t: float):
    """``colour`` mixed with white: ``t = 0`` white, ``t = 1`` the colour itself."""
    from matplotlib.colors import to_rgb

    return tuple(1 - t * (1 - c) for c in to_rgb(colour))


def _label_place(src, dst, rad, width, placed, nodes):
    """Where a connection's label goes: the point along it (``t`` from 0.2 to 0.8) whose box
    (``width`` × 0.24 in layout units, above the point) overlaps the labels already placed
    least, and then the nodes; the middle first among equals. Appends it to ``placed``."""

    def overlap(a, b):  # the area shared by two boxes (x0, y0, x1, y1)
        return (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))

    best = None
    for t in (0.5, 0.42, 0.58, 0.35, 0.65, 0.27, 0.73, 0.2, 0.8):
        cx, cy = _on_curve(src, dst, rad, t)
        box = (cx - width / 2, cy, cx + width / 2, cy + 0.24)
        cost = (3 * sum(overlap(box, other) for other in placed)
                + 2 * sum(overlap(box, (x - 0.34, y - 0.34, x + 0.34, y + 0.34))
                          for x, y in nodes))
        if best is None or cost < best[0] - 1e-9:
            best = (cost, (cx, cy), box)
        if cost == 0:
            break
    placed.append(best[2])
    return best[1]


def _visible(label: str) -> int:
    """About how many characters wide a label with mathtext is (a command is one glyph)."""
    import re

    return len(re.sub(r"[{}$^_]", "", re.sub(r"\\[a-zA-Z]+", "x", label)))


def _signed(v: float) -> str:
    return POSITIVE if v > 0 else NEGATIVE if v < 0 else EDGE


def draw_network(
    net: Network,
    *,
    highlight=None,
    output: int | None = None,
    ax=None,
    label_weights: bool | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    max_neurons: int = 12,
    max_connections: int = 3000,
    params=None,
    x=None,
    y=None,
    nodes: str | None = None,
    edges: str | None = None,
    frozen=None,
    loss="squared",
    edge_scale: float | None = None,
    digits: int = 4,
):
    """Draws ``net`` as a graph: layers as columns, one line per existing connection.

    Layer 0 (the input ``x``) is a column of squares; each neuron ``(l, k)`` is a circle
    labelled with its activation (``z`` for identity, ``z²`` for square, ``σ`` for logistic,
    …) and named ``φ^l_k`` beside it. Each layer with a bias gets a bias node ``1`` atop the
    previous column. Only connections that exist are drawn (adjacency masks and
    ``bias=False`` respected); connections that skip layers are drawn as curves.

    **Large layers in summary.** A column of more than ``max_neurons`` neurons shows its first
    and last few (and the highlighted weight's own neurons), with a gap node ``⋮ n more``
    for those left out; only connections between neurons drawn are drawn. So any network
    draws in about a second (a 784-512-10 network as a 12-12-10 picture); networks of at
    most ``max_neurons`` neurons a layer, the paper's figure 2 among them, are drawn whole.
    ``max_connections`` guards the rest (a very deep network): when more connections would
    be drawn, the columns are summarised further, down to 3 neurons; beyond that it is an
    error.

    Every connection is a ``FancyArrowPatch`` whose ``gid`` is ``"w^l_(j,k)"`` (paper
    numbering), so a figure can be inspected or restyled; nodes are ``"node(l,k)"``, gap
    nodes ``"gap(l,k)"`` (``k`` the first neuron left out).

    Args:
      net: the network (any DAG).
      highlight: optional weight ``(m, p, r)`` (``w^m_pr``, paper numbering): the weight's
        own connection and every chain-rule path from it to the output are drawn in green,
        as the paper's figure 2 does for ``∂L/∂w^1_21``. See :func:`bpjax.weight_paths`.
      output: with ``highlight``, only the paths to ``φ^L_k`` for this ``k``; default every
        output (the paths of ``∂L/∂w``).
      ax: a matplotlib ``Axes`` to draw into; default a new figure.
      label_weights: write ``w^l_jk`` on every connection drawn (the highlighted weight is
        always labelled); with ``edges``, ``w^l_jk = value``. Default (None): with
        ``edges``, when at most 16 connections are drawn; else no.
      title: the axes title; with ``highlight`` the default names the derivative.
      figsize: the new figure's size in inches; default from the network's size (at most
        40 inches a side).
      max_neurons: columns with more neurons than this are drawn in summary (``≥ 3``).
      max_connections: the most connections drawn (``≥ 1``), see above.
      params: the weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``, for the numbers.
      x: the sample ``x_i`` ``(D,)`` whose values are drawn (``nodes``, ``edges="grad"``).
      y: its target ``y_i`` ``(d,)``, or a class label (``nodes="delta"``, ``edges="grad"``).
      nodes: ``"a"``, ``"phi"`` or ``"delta"``: write ``a^l_k``, ``φ^l_k`` (for the inputs,
        ``x[k]``) or ``δ^l_k = ∂L/∂a^l_k`` under each neuron drawn, and fill it by sign
        (blue ``> 0``, orange ``< 0``), the stronger the larger ``|value|``.
      edges: ``"w"`` (the weights ``w^l_jk``) or ``"grad"`` (``∂L/∂w^l_jk`` of the one
        sample, as :func:`bpjax.explain` gives it): each connection blue ``> 0`` or orange
        ``< 0``, its width proportional to ``|value|`` (the largest drawn 6 points wide).
      frozen: optional clamps (:func:`bpjax.clamp`): those connections are dotted and
        labelled "clamped".
      loss: the loss of ``δ`` and ``∂L/∂w``, a name or a :class:`bpjax.Loss` (default
        ``"squared"``, equation (1)), as in :func:`bpjax.explain`; it is named in the key.
      edge_scale: the ``|value|`` drawn as the widest line (larger ones are as wide); default
        the largest drawn. Fix it to compare drawings, e.g. the frames of an animation.
      digits: the significant digits of the numbers written (``≥ 1``).

    Returns:
      The ``matplotlib.figure.Figure`` drawn into.

    Raises:
      ImportError: matplotlib is not installed.
      ValueError: a bad argument, or more than ``max_connections`` connections even with
        every column summarised to 3 neurons.
    """
    check_network(net, "draw_network")
    for name, v, least in (("max_neurons", max_neurons, 3),
                           ("max_connections", max_connections, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise ValueError(f"{name} must be an int >= {least}, got {v!r}")
    if ax is not None and not (hasattr(ax, "add_patch") and hasattr(ax, "figure")):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}: {ax!r:.40}")
    if figsize is not None and not (
            isinstance(figsize, (tuple, list)) and len(figsize) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < np.inf
                    for v in figsize)):
        raise ValueError(f"figsize must be (width, height) in inches, two numbers > 0, got "
                         f"{figsize!r}")
    if edge_scale is not None:
        edge_scale = float(number(edge_scale, "edge_scale", minimum=0, strict=True))
    digits = int(number(digits, "digits", integer=True, minimum=1))
    on, n_paths, weight_edge = None, 0, None
    if highlight is not None:
        m, p, r = check_weight(net, highlight)
        k_out = check_output(net, output, allow_all=True)
        on, n_paths = _lit(net, (m, p, r), k_out)
        weight_edge = (m, p, r) if net.structure(m)[p, r - 1] else None
    elif output is not None:
        raise ValueError("output= selects the highlighted paths: pass highlight=(m, p, r) too")
    node_values, edge_values, frozen, sample = _numbers(net, params, x, y, nodes, edges,
                                                        frozen, loss)
    Figure, Circle, FancyArrowPatch, Rectangle = _import_matplotlib()

    keep = set()
    if weight_edge is not None:
        m, p, r = weight_edge
        keep.add((m, r))
        if p > 0:
            keep.add(source(net, m, p))
    if highlight is not None and output is not None:
        keep.add((net.depth, output))

    def connections(shown):
        drawn = [np.isin(np.arange(1, n + 1), ks) for n, ks in zip(net.sizes, shown)]
        out = []
        for l in range(1, net.depth + 1):
            rows = np.zeros(net.shapes[l - 1][0], bool)
            rows[0] = True
            for s, block in net.blocks(l):
                rows[block] = drawn[s]
            mask = net.structure(l) & rows[:, None] & drawn[l][None, :]
            out.append(mask)
        return out

    limit = max_neurons
    while True:
        shown = _shown(net, limit, keep)
        masks = connections(shown)
        count = int(sum(m.sum() for m in masks))
        if count <= max_connections or limit == 3:
            break
        limit = max(3, limit * 2 // 3)
    if count > max_connections:
        raise ValueError(
            f"draw_network would draw {count} connections even with every column summarised "
            f"to 3 neurons, more than max_connections={max_connections}: draw part of the "
            f"network, or raise max_connections")

    if label_weights is None:
        label_weights = edge_values is not None and count <= 16
    L = net.depth
    dx = 3.0 if label_weights and edge_values is not None else 2.2  # room for the numbers
    pos, bias, gaps = _layout(net, dx, shown)
    drawn = []  # (l, j, k, src, dst, skip, rad): one per connection drawn
    ys = [y for _, y in [*pos.values(), *bias.values(), *(c for c, _ in gaps.values())]]
    columns = {}  # the node centres of each column, for the curves to avoid
    for (t, _), c in pos.items():
        columns.setdefault(t, []).append(c)
    for l in range(1, L + 1):
        for j, k in zip(*masks[l - 1].nonzero()):
            j, k = int(j), int(k) + 1
            s, i = (l - 1, 0) if j == 0 else source(net, l, j)
            src, dst = (bias[l] if j == 0 else pos[(s, i)]), pos[(l, k)]
            rad = 0.0
            if l - s > 1:  # a skip connection: curved, around the columns it jumps over
                rad, low, high = _skip_rad(src, dst, [c for t in range(s + 1, l)
                                                      for c in columns.get(t, ())]
                                           + [c for t, c in bias.items() if s < t - 1 < l])
                ys += [low, high]
            drawn.append((l, j, k, src, dst, l - s > 1, rad))
    bottom = min(ys) - 0.6  # the column captions go below this
    top = max(ys) + 0.8
    numbered = node_values is not None or edge_values is not None  # a key goes below
    xlim, ylim = (-0.8, L * dx + 0.8), (bottom - (1.4 if numbered else 0.7), top)
    if ax is None:  # about 0.9 inch per unit of the layout, so text keeps its size
        size = figsize or (max(3.6, 0.9 * (xlim[1] - xlim[0])), 0.9 * (ylim[1] - ylim[0]) + 0.4)
        if figsize is None and max(size) > 40:
            size = tuple(v * 40 / max(size) for v in size)
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure

    lit_nodes = set()
    if on is not None:
        lit_nodes = {(l, k) for l in range(L + 1) for k in shown[l] if on[l][k - 1]}
    lit_edges = {(l, j, k) for l, j, k, *_ in drawn  # a lit source into a lit neuron
                 if j > 0 and (l, k) in lit_nodes and source(net, l, j) in lit_nodes}
    if weight_edge is not None:
        lit_edges.add(weight_edge)
    if weight_edge is not None and weight_edge[1] > 0:  # where the weight's input comes from
        lit_nodes.add(source(net, weight_edge[0], weight_edge[1]))

    # --- the numbers: scales, and whether connections are labelled ---
    edge_max = node_max = 0.0
    if edge_values is not None:
        edge_max = max((abs(float(edge_values[l - 1][j, k - 1])) for l, j, k, *_ in drawn),
                       default=0.0)
    if edge_scale is not None:
        edge_max = edge_scale
    if node_values is not None:
        node_max = max((abs(float(node_values[l][k - 1])) for (l, k) in pos
                        if node_values[l] is not None), default=0.0)

    # --- connections, under the nodes ---
    placed: list = []  # the boxes of the labels written so far
    node_centres = [*pos.values(), *bias.values()]
    widest = 6.0 if len(drawn) <= 40 else 3.5  # the largest |value|'s line, in points
    for l, j, k, src, dst, skip, rad in drawn:
        lit = (l, j, k) in lit_edges
        clamped = frozen is not None and bool(frozen[l - 1][j, k - 1])
        colour, width = (HIGHLIGHT, 2.6) if lit else (EDGE, 0.9)
        value = None
        if edge_values is not None:
            value = float(edge_values[l - 1][j, k - 1])
            width = 0.5 + (widest - 0.5) * (min(abs(value) / edge_max, 1.0) if edge_max > 0
                                            else 0.0)
            colour = HIGHLIGHT if lit else _signed(value)
        style = ":" if clamped else "--" if skip and not lit else "-"
        edge = FancyArrowPatch(
            src, dst, arrowstyle="-", connectionstyle=f"arc3,rad={rad}",
            color=colour, linewidth=width, linestyle=style,
            zorder=3 if lit else 2 if value is not None else 1, shrinkA=0, shrinkB=0,
        )
        edge.set_gid(f"w^{l}_({j},{k})")
        ax.add_patch(edge)
        if label_weights or (l, j, k) == weight_edge:
            label = _weight_tex(l, j, k)
            if value is not None and edges == "grad":  # the number is ∂L/∂w, not w
                label = f"$\\partial\\mathcal{{L}}/\\partial {label.strip('$')}$"
            if value is not None:
                label += f" = {value:.{digits}g}"
            if clamped:
                label += " (clamped)"
            xy = _label_place(src, dst, rad, 0.065 * _visible(label) + 0.1, placed,
                              node_centres)
            ax.annotate(label, xy, fontsize=9 if lit else 7,
                        color=HIGHLIGHT if lit else "#333333", ha="center", va="bottom",
                        zorder=6, bbox=dict(boxstyle="round,pad=0.1", fc="white",
                                            ec="none", alpha=0.8))

    # --- nodes ---
    radius, half = 0.32, 0.3
    for (l, k), (cx, cy) in pos.items():
        lit = (l, k) in lit_nodes
        ec, lw = (HIGHLIGHT, 2.4) if lit else ("black", 1.1)
        value = None
        if node_values is not None and node_values[l] is not None:
            value = float(node_values[l][k - 1])
        fill = "#f2f2f2" if l == 0 else "white"
        if value is not None and node_max > 0:
            fill = _tint(_signed(value), 0.75 * abs(value) / node_max)
        if l == 0:
            node = Rectangle((cx - half, cy - half), 2 * half, 2 * half, fc=fill, ec=ec, lw=lw,
                             zorder=4)
            text = f"$x_{{[{k}]}}$"
        else:
            node = Circle((cx, cy), radius, fc=fill, ec=ec, lw=lw, zorder=4)
            name = net.layer(l).activations[k - 1].name
            text = _SHORT.get(name, name[:6])
            ax.annotate(f"$\\varphi^{{{l}}}_{{{k}}}$",
                        (cx + radius * 0.75, cy + radius * 0.75),
                        fontsize=8, color="#444444", zorder=5)
        node.set_gid(f"node({l},{k})")
        ax.add_patch(node)
        ax.text(cx, cy, text, ha="center", va="center", fontsize=10 if len(text) <= 4 else 7,
                zorder=5)
        if value is not None:
            ax.text(cx, cy - radius - 0.06, f"{value:.{digits}g}", ha="center", va="top",
                    fontsize=7.5,
                    zorder=6, gid=f"value({l},{k})",
                    bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="#bbbbbb", lw=0.5))
    for l, (cx, cy) in bias.items():
        lit = weight_edge is not None and weight_edge[0] == l and weight_edge[1] == 0
        node = Rectangle((cx - 0.18, cy - 0.18), 0.36, 0.36, fc="#fff8dc",
                         ec=HIGHLIGHT if lit else "#777777", lw=2.2 if lit else 0.9, zorder=4)
        node.set_gid(f"bias({l})")
        ax.add_patch(node)
        ax.text(cx, cy, "1", ha="center", va="center", fontsize=8, zorder=5)
    for (l, k), ((cx, cy), n) in gaps.items():
        gap = Rectangle((cx - 0.3, cy - 0.3), 0.6, 0.6, fc="none", ec="none", zorder=4)
        gap.set_gid(f"gap({l},{k})")
        ax.add_patch(gap)
        ax.text(cx, cy + 0.08, "⋮", ha="center", va="center", fontsize=12, zorder=5)
        ax.text(cx, cy - 0.28, f"{n} more", ha="center", va="center", fontsize=7,
                color="#444444", zorder=5)

    # --- frame ---
    for l in range(L + 1):
        label = "input x" if l == 0 else ("output" if l == L else f"layer {l}")
        if len(shown[l]) < net.sizes[l]:
            label += f"\nN_{l} = {net.sizes[l]} ({len(shown[l])} drawn)"
        ax.text(l * dx, bottom, f"l = {l}\n{label}", ha="center", va="top", fontsize=8,
                color="#444444")
    if title is None and highlight is not None:
        m, p, r = highlight
        wt = _weight_tex(m, p, r).strip("$")
        of = r"\mathcal{L}" if output is None else f"\\varphi^{{{L}}}_{{{output}}}"
        n = int(n_paths) if n_paths < 1e15 else n_paths
        count = f"{n}" if isinstance(n, int) else f"{n:.3g}"
        title = (f"chain rule for $\\partial {of}/\\partial {wt}$: "
                 f"{count} path{'' if n == 1 else 's'}" + (" (derivative 0)" if n == 0 else ""))
    key = []
    if node_values is not None:
        key.append(f"neurons: ${NODE_VALUES[nodes]}$")
    if edge_values is not None:
        key.append(f"connections: ${EDGE_VALUES[edges]}$ (width ∝ |value|, largest "
                   f"{edge_max:.{digits}g})")
    if key:
        key_text = "; ".join(key) + "\nblue > 0, orange < 0" + (f"; at {sample}" if sample else "")
        ax.text((xlim[0] + xlim[1]) / 2, bottom - 0.75, key_text, ha="center", va="top",
                fontsize=8, color="#222222", gid="key")
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig
