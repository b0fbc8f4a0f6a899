"""Experiment 7: the network drawn, like figure 2, with the chain rule's paths in green.

``bp.draw_network`` draws layers as columns and neurons labelled with their activation;
``highlight=(m, p, r)`` draws every chain-rule path from ``w^m_pr`` to the output in green.
``bp.chain_rule_paths`` writes the same paths as products of local derivatives, with their
values at one input. Two networks: figure 2 itself (the green path of ``∂L/∂w^1_21``) and a
DAG with skip connections and an adjacency mask, where one weight lies on two paths.
Each path sum is checked against the hand-written backward pass (``bp.per_example_backprop``
with residual 1 gives ``∂φ^L_1/∂w``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import bpjax as bp
from report import Section, run, save_figure, table

FIGURE_2 = bp.Network(2, [bp.Layer(2, ("identity", "square")),
                          bp.Layer(1, "identity", bias=False)])
# weights worked by hand in tests/paper_example_test.py: w^2_11 = 2, x[2] = 2
FIGURE_2_PARAMS = (jnp.array([[1.0, -1.0], [2.0, 0.5], [-1.0, 3.0]]),
                   jnp.array([[0.0], [2.0], [-3.0]]))
FIGURE_2_X = jnp.array([1.0, 2.0])

DAG = bp.Network(2, [
    bp.Layer(3, "tanh"),
    bp.Layer(2, "logistic", adjacency=[[1, 0], [1, 1], [0, 1]]),  # w^2_(1,2), w^2_(3,1) absent
    bp.Layer(1, "identity", inputs=(0, 1, 2)),  # skips from x and from layer 1
])
DAG_X = jnp.array([0.5, -1.0])


def _backprop_value(net, params, x, weight):
    """``∂φ^L_1/∂w^m_pr(x)`` from the backward pass: per-sample gradient at residual 1."""
    m, p, r = weight
    phi = bp.forward(net, params, x[None])
    per = bp.per_example_backprop(net, params, x[None], phi - 1.0)
    return float(per[m - 1][0, p, r - 1])


def experiment() -> Section:
    dag_params = bp.init(DAG, jax.random.key(0))
    cases = {
        "figure 2, ∂φ_θ/∂w^1_21 (the green path)":
            (FIGURE_2, FIGURE_2_PARAMS, FIGURE_2_X, (1, 2, 1)),
        "figure 2, ∂φ_θ/∂w^1_02 (through the square neuron)":
            (FIGURE_2, FIGURE_2_PARAMS, FIGURE_2_X, (1, 0, 2)),
        "DAG, ∂φ^3_1/∂w^1_21 (a skip and a hop)": (DAG, dag_params, DAG_X, (1, 2, 1)),
        "DAG, ∂φ^3_1/∂w^2_12 (absent: masked out)": (DAG, dag_params, DAG_X, (2, 1, 2)),
    }
    rows, texts, numbers = [], [], {}
    for name, (net, params, x, weight) in cases.items():
        chain = bp.chain_rule_paths(net, params, x, weight=weight)
        ref = _backprop_value(net, params, x, weight)
        err = abs(chain.value - ref)
        rows.append([name, len(chain.paths), f"{chain.value:.6g}", f"{ref:.6g}", f"{err:.1e}"])
        texts.append(f"{name}, at x = {tuple(float(v) for v in x)}:\n\n```\n{chain}\n```")
        numbers[name] = {"paths": len(chain.paths), "value": chain.value, "backprop": ref,
                         "abs_difference": err}

    fig2 = save_figure(bp.draw_network(FIGURE_2, highlight=(1, 2, 1)), "e7_figure2")
    fig2_all = save_figure(bp.draw_network(FIGURE_2, label_weights=True,
                                           title="figure 2 with every weight named"),
                           "e7_figure2_weights")
    dag = save_figure(bp.draw_network(DAG, highlight=(1, 2, 1)), "e7_dag")
    worst = max(v["abs_difference"] for v in numbers.values())
    n = "\n\n".join(texts)
    md = f"""
`bp.draw_network(net, highlight=(m, p, r))`: layers are columns (squares for the input
`x` and the bias `1`, circles for neurons, labelled with their activation), and every
chain-rule path from `w^m_pr` to the output is green. Left: the paper's figure 2 with the
green path of `∂L/∂w^1_21`; right: every weight named.

{fig2} {fig2_all}

A DAG: layer 2 reads layer 1 through an adjacency mask (`w^2_(1,2)` and `w^2_(3,1)` are
absent), and the output reads `x`, layer 1 and layer 2 (skip connections, dashed). The
weight `w^1_21` now lies on two paths: through `φ^2_1`, and straight to the output.

{dag}

`bp.chain_rule_paths` writes each derivative as the paper does below figure 2: one
product of local derivatives per path, with symbols, expressions and values. Figure 2's
weights are those worked by hand in `tests/paper_example_test.py` (`w^2_11 = 2`, `x = (1,
2)`, so the green path is `1 · 2 · 1 · 2 = 4`); the DAG's come from `bp.init`. Each sum is
compared with the hand-written backward pass (`bp.per_example_backprop` at residual 1):

{table(["derivative", "paths", "sum over paths", "backprop", "difference"], rows)}

Largest difference: {worst:.1e} (float32). The path listings:

{n}
"""
    return Section("e7_network_drawing", "7. The network drawn, and the chain rule as paths",
                   md, numbers)


if __name__ == "__main__":
    print(run(experiment).markdown)
