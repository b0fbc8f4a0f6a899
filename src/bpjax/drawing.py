"""Drawing a network, DAGs included, in the style of the paper's figure 2.

| figure 2                               | :func:`draw_network`                              |
| -------------------------------------- | ------------------------------------------------- |
| input nodes ``φ^0_k = x[k]`` (squares) | column 0, squares labelled ``x[k]``               |
| neuron ``(l, k)`` with its ``φ^l_k``   | column ``l``, a circle labelled by its activation |
| the bias input ``φ^{l-1}_0 = 1``       | a square ``1`` atop column ``l-1`` if ``l`` has a bias |
| the connections ``w^l_jk``             | one line per existing connection; skips curve    |
| the green path of ``∂L/∂w^1_21``       | ``highlight=(1, 2, 1)``                           |

matplotlib is an optional dependency (the ``experiments`` extra); it is imported when
:func:`draw_network` is called. No pyplot state is touched: the figure is a plain
``matplotlib.figure.Figure`` unless an ``ax`` is given.
"""

from __future__ import annotations

from bpjax.network import Network, check_network
from bpjax.paths import check_output, check_weight, hops, source, weight_paths

__all__ = ["draw_network"]

HIGHLIGHT = "#2ca02c"  # the paper's green path
EDGE = "#9a9a9a"
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


def _layout(net: Network, dx: float):
    """Node centres: ``pos[(l, k)]`` for neurons and inputs (``l = 0``), ``bias[l]`` for the
    bias node of layer ``l`` (drawn atop column ``l-1``)."""
    L = net.depth
    slots = [net.sizes[l] + (1 if l < L and net.layer(l + 1).bias else 0) for l in range(L + 1)]
    tallest = max(slots)  # bias nodes sit a little above their column when there is room
    pos, bias = {}, {}
    for l in range(L + 1):
        top = (slots[l] - 1) / 2
        y = top
        if l < L and net.layer(l + 1).bias:
            bias[l + 1] = (l * dx, y + 0.1 * (tallest > 1))
            y -= 1
        for k in range(1, net.sizes[l] + 1):
            pos[(l, k)] = (l * dx, y)
            y -= 1
    return pos, bias


def draw_network(
    net: Network,
    *,
    highlight=None,
    output: int | None = None,
    ax=None,
    label_weights: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Draws ``net`` as a graph: layers as columns, one line per existing connection.

    Layer 0 (the input ``x``) is a column of squares; each neuron ``(l, k)`` is a circle
    labelled with its activation (``z`` for identity, ``z²`` for square, ``σ`` for logistic,
    …) and named ``φ^l_k`` beside it. Each layer with a bias gets a bias node ``1`` atop the
    previous column. Only connections that exist are drawn (adjacency masks and
    ``bias=False`` respected); connections that skip layers are drawn as curves.

    Every connection is a ``FancyArrowPatch`` whose ``gid`` is ``"w^l_(j,k)"`` (paper
    numbering), so a figure can be inspected or restyled.

    Args:
      net: the network (any DAG).
      highlight: optional weight ``(m, p, r)`` (``w^m_pr``, paper numbering): the weight's
        own connection and every chain-rule path from it to the output are drawn in green,
        as the paper's figure 2 does for ``∂L/∂w^1_21``. See :func:`bpjax.weight_paths`.
      output: with ``highlight``, only the paths to ``φ^L_k`` for this ``k``; default every
        output (the paths of ``∂L/∂w``).
      ax: a matplotlib ``Axes`` to draw into; default a new figure.
      label_weights: write ``w^l_jk`` on every connection (the highlighted weight is always
        labelled).
      title: the axes title; with ``highlight`` the default names the derivative.
      figsize: the new figure's size in inches; default from the network's size.

    Returns:
      The ``matplotlib.figure.Figure`` drawn into.

    Raises:
      ImportError: matplotlib is not installed.
    """
    check_network(net, "draw_network")
    paths, weight_edge = (), None
    if highlight is not None:
        m, p, r = check_weight(net, highlight)
        k_out = check_output(net, output, allow_all=True)
        paths = weight_paths(net, (m, p, r), k_out)
        weight_edge = (m, p, r) if net.structure(m)[p, r - 1] else None
    elif output is not None:
        raise ValueError("output= selects the highlighted paths: pass highlight=(m, p, r) too")
    Figure, Circle, FancyArrowPatch, Rectangle = _import_matplotlib()

    L, dx = net.depth, 2.2
    pos, bias = _layout(net, dx)
    edges = []  # (l, j, k, src, dst, skip, rad): one per connection that exists
    ys = [y for _, y in [*pos.values(), *bias.values()]]
    for l in range(1, L + 1):
        for j, k in zip(*net.structure(l).nonzero()):
            j, k = int(j), int(k) + 1
            s, i = (l - 1, 0) if j == 0 else source(net, l, j)
            src, dst = (bias[l] if j == 0 else pos[(s, i)]), pos[(l, k)]
            rad = 0.0
            if l - s > 1:  # a skip connection: curved, around the columns it jumps over
                rad, low, high = _skip_rad(src, dst, [c for (t, _), c in pos.items() if s < t < l]
                                           + [c for t, c in bias.items() if s < t - 1 < l])
                ys += [low, high]
            edges.append((l, j, k, src, dst, l - s > 1, rad))
    bottom = min(ys) - 0.6  # the column captions go below this
    top = max(ys) + 0.8
    xlim, ylim = (-0.8, L * dx + 0.8), (bottom - 0.7, top)
    if ax is None:  # about 0.9 inch per unit of the layout, so text keeps its size
        size = figsize or (max(3.6, 0.9 * (xlim[1] - xlim[0])), 0.9 * (ylim[1] - ylim[0]) + 0.4)
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure

    lit_edges = {e for path in paths for e in hops(net, path)}
    if weight_edge is not None:
        lit_edges.add(weight_edge)
    lit_nodes = {n for path in paths for n in path}
    if weight_edge is not None and weight_edge[1] > 0:  # where the weight's input comes from
        lit_nodes.add(source(net, weight_edge[0], weight_edge[1]))

    # --- connections, under the nodes ---
    for l, j, k, src, dst, skip, rad in edges:
        lit = (l, j, k) in lit_edges
        edge = FancyArrowPatch(
            src, dst, arrowstyle="-", connectionstyle=f"arc3,rad={rad}",
            color=HIGHLIGHT if lit else EDGE, linewidth=2.6 if lit else 0.9,
            linestyle="--" if skip and not lit else "-", zorder=3 if lit else 1,
            shrinkA=0, shrinkB=0,
        )
        edge.set_gid(f"w^{l}_({j},{k})")
        ax.add_patch(edge)
        if label_weights or (l, j, k) == weight_edge:
            t = 0.3 if j else 0.45
            xy = _on_curve(src, dst, rad, t)
            ax.annotate(_weight_tex(l, j, k), xy, fontsize=9 if lit else 7,
                        color=HIGHLIGHT if lit else "#555555", ha="center", va="bottom",
                        zorder=6, bbox=dict(boxstyle="round,pad=0.1", fc="white",
                                            ec="none", alpha=0.8))

    # --- nodes ---
    radius, half = 0.32, 0.3
    for (l, k), (x, y) in pos.items():
        lit = (l, k) in lit_nodes
        ec, lw = (HIGHLIGHT, 2.4) if lit else ("black", 1.1)
        if l == 0:
            node = Rectangle((x - half, y - half), 2 * half, 2 * half, fc="#f2f2f2", ec=ec, lw=lw,
                             zorder=4)
            text = f"$x_{{[{k}]}}$"
        else:
            node = Circle((x, y), radius, fc="white", ec=ec, lw=lw, zorder=4)
            name = net.layer(l).activations[k - 1].name
            text = _SHORT.get(name, name[:6])
            ax.annotate(f"$\\varphi^{{{l}}}_{{{k}}}$", (x + radius * 0.75, y + radius * 0.75),
                        fontsize=8, color="#444444", zorder=5)
        node.set_gid(f"node({l},{k})")
        ax.add_patch(node)
        ax.text(x, y, text, ha="center", va="center", fontsize=10 if len(text) <= 4 else 7,
                zorder=5)
    for l, (x, y) in bias.items():
        lit = weight_edge is not None and weight_edge[0] == l and weight_edge[1] == 0
        node = Rectangle((x - 0.18, y - 0.18), 0.36, 0.36, fc="#fff8dc",
                         ec=HIGHLIGHT if lit else "#777777", lw=2.2 if lit else 0.9, zorder=4)
        node.set_gid(f"bias({l})")
        ax.add_patch(node)
        ax.text(x, y, "1", ha="center", va="center", fontsize=8, zorder=5)

    # --- frame ---
    for l in range(L + 1):
        label = "input x" if l == 0 else ("output" if l == L else f"layer {l}")
        ax.text(l * dx, bottom, f"l = {l}\n{label}", ha="center", va="top", fontsize=8,
                color="#444444")
    if title is None and highlight is not None:
        m, p, r = highlight
        wt = _weight_tex(m, p, r).strip("$")
        of = r"\mathcal{L}" if output is None else f"\\varphi^{{{L}}}_{{{output}}}"
        n = len(paths)
        title = (f"chain rule for $\\partial {of}/\\partial {wt}$: "
                 f"{n} path{'' if n == 1 else 's'}" + (" (derivative 0)" if n == 0 else ""))
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig
