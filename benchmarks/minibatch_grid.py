"""Minibatches and optimizers over a grid of shapes: ``bp.fit(batch_size=B)`` against the
``jax.grad`` + optax loop a JAX user writes (issue 14, item 2).

For every shape of :data:`SHAPES`, batch size ``B`` and optimizer (``optax.adam(1e-3)``, and
plain SGD: ``optimizer=None`` for bpjax, ``optax.sgd(η)`` for the baseline), both competitors
train the same network from the same weights over the same batches in the same order
(dataset order, no shuffling) for the same epochs, and compute loss (1) on the training set
after every epoch:

* **bpjax.fit**: ``bp.fit(net, params, X, Y, batch_size=B, optimizer=..., epochs=E)``, called
  as a user calls it (argument checks, the optimizer's ``init``, the compiled loop, the
  result).
* **jax.grad + optax in lax.scan**: a plain JAX MLP (``h @ W + b``, the same activations),
  ``optimizer.init`` then one jitted call: a ``lax.scan`` over epochs of a ``lax.scan`` over
  the batches of ``jax.grad`` of the batch's share of loss (1), ``optimizer.update`` and
  ``optax.apply_updates``, and the loss after each epoch: the idiomatic JAX training loop.

Both take the step of :mod:`bpjax.training` (``G_B = (1/N) Σ_{i∈B} ∂L/∂w(x_i)``), so their
final losses must agree (checked). *ratio* = the baseline's time / bpjax's: ``> 1`` means
bpjax is faster. ``B`` divides ``N``, so neither pads a batch.

    python benchmarks/minibatch_grid.py --shapes 0,1 --batch 16    # a few cells, printed
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpjax as bp
from benchmarks import baselines
from benchmarks.harness import Runner, device_label, interleave, ratio
from benchmarks.report import target

# (label, D, [(N_l, activation or per-neuron tuple), ...], dtype): widths 2-512, depths 1-5,
# d = 1-10, per-neuron mixes, float32 and float64. The first three are issue 14's own.
SHAPES = [
    ("8-32-32-1 tanh", 8, [(32, "tanh"), (32, "tanh"), (1, "identity")], "float32"),
    ("64-128-10 tanh", 64, [(128, "tanh"), (10, "identity")], "float32"),
    ("784-256-256-10 relu", 784, [(256, "relu"), (256, "relu"), (10, "identity")], "float32"),
    ("2-2-1 logistic", 2, [(2, "logistic"), (1, "identity")], "float32"),
    ("10-1 linear", 10, [(1, "identity")], "float32"),
    ("3-512-1 tanh", 3, [(512, "tanh"), (1, "identity")], "float32"),
    ("16-64×4-3 tanh/relu mix", 16, [(64, ("tanh", "relu") * 32)] * 4 + [(3, "identity")],
     "float32"),
    ("5-16-16-2 softplus f64", 5, [(16, "softplus"), (16, "softplus"), (2, "identity")],
     "float64"),
    ("100-200-10 logistic f64", 100, [(200, "logistic"), (10, "identity")], "float64"),
    ("48-96-96-6 relu/logistic f64", 48,
     [(96, "relu"), (96, ("logistic",) * 48 + ("relu",) * 48), (6, "identity")], "float64"),
]
# issue 14's cells: (shape index, B) trained with Adam, besides the grid of B
ISSUE_CELLS = [(0, 32), (1, 64), (2, 128)]

def network(D: int, layers) -> bp.Network:
    return bp.Network(D, [bp.Layer(n, act) for n, act in layers])


def plain_trainer(forward, optimizer, N: int, B: int, epochs: int) -> Callable:
    """The idiomatic JAX loop: ``train(mlp, state, X, Y) -> ((mlp, state), losses)``, jitted."""
    def share_of_loss(mlp, X, Y):  # L_B: the batch's terms of loss (1), over N
        r = forward(mlp, X) - Y
        return 0.5 * jnp.sum(r * r) / N

    grad = jax.grad(share_of_loss)

    def step(carry, batch):
        mlp, state = carry
        u, state = optimizer.update(grad(mlp, *batch), state, mlp)
        return (optax.apply_updates(mlp, u), state), None

    @jax.jit
    def train(mlp, state, X, Y):
        batches = (X.reshape(N // B, B, X.shape[1]), Y.reshape(N // B, B, Y.shape[1]))

        def epoch(carry, _):
            carry, _ = jax.lax.scan(step, carry, batches)
            return carry, share_of_loss(carry[0], X, Y)

        return jax.lax.scan(epoch, (mlp, state), None, length=epochs)

    return train


def _data(N, D, d, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(dtype)
    Z = X[:, : min(D, 3)].sum(axis=1, keepdims=True)
    Y = np.concatenate([np.sin(Z + k) for k in range(d)], axis=1).astype(dtype)
    return X, Y


def cell_factories(shape, B: int, opt: str, cfg: dict) -> dict[str, Callable[[], Runner]]:
    """The two competitors of one cell of the grid (shape × B × optimizer)."""
    label, D, layers, dtype = shape
    N, E, eta = cfg["N"], cfg["epochs"], cfg["sgd_learning_rate"]
    x64 = dtype == "float64"
    with jax.enable_x64(x64):
        net = network(D, layers)
        params = bp.init(net, jax.random.key(sum(n for n, _ in layers)), dtype=dtype)
        mlp = baselines.to_mlp(params)
        X, Y = _data(N, D, layers[-1][0], dtype, seed=D)
    activations = [act for _, act in layers]
    forward = baselines.jax_mlp(activations)  # a mix: one select per function past the first
    plain_opt = optax.adam(cfg["adam_learning_rate"]) if opt == "adam" else optax.sgd(eta)
    fit_kwargs = (dict(optimizer=plain_opt) if opt == "adam"
                  else dict(optimizer=None, learning_rate=eta))

    def in_x64(fn):
        def run():
            with jax.enable_x64(x64):
                return fn()
        return run

    def finish(mlp_out):  # loss (1) in float64 numpy, the grid's yardstick
        return {"final_loss": baselines.mlp_loss_np(mlp_out, X, Y, activations=activations)}

    def bpjax_fit():
        with jax.enable_x64(x64):
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        def run():
            r = bp.fit(net, params, Xj, Yj, batch_size=B, epochs=E, **fit_kwargs)
            return jax.block_until_ready(r)

        return Runner(in_x64(run), lambda r: finish(baselines.to_mlp(r.params)),
                      device_label())

    def plain():
        with jax.enable_x64(x64):
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
            mlp_j = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp]
        train = plain_trainer(forward, plain_opt, N, B, E)

        def run():
            state = plain_opt.init(mlp_j)
            return jax.block_until_ready(train(mlp_j, state, Xj, Yj))

        return Runner(in_x64(run), lambda out: finish(out[0][0]), device_label())

    return {"bpjax.fit": bpjax_fit, "jax.grad + optax in lax.scan": plain}


def config(quick: bool) -> dict:
    return {
        "N": 1024 if quick else 2048,
        "epochs": 2 if quick else 10,
        "batch_sizes": (16, 256) if quick else (16, 64, 256),
        "optimizers": ("adam", "sgd"),
        "shapes": (0, 3, 7) if quick else tuple(range(len(SHAPES))),
        "issue_cells": () if quick else tuple(ISSUE_CELLS),
        "adam_learning_rate": 1e-3,
        "sgd_learning_rate": 0.5,
        "repeats": 3 if quick else 7,
        "min_time_s": 0.02 if quick else 0.1,
    }


def cells(cfg: dict) -> list[tuple[int, int, str]]:
    out = [(s, B, opt) for s in cfg["shapes"] for B in cfg["batch_sizes"]
           for opt in cfg["optimizers"]]
    out += [(s, B, "adam") for s, B in cfg["issue_cells"] if (s, B, "adam") not in out]
    return out


def run_grid(cfg: dict, repeats: int, log: Callable[[str], None]) -> dict:
    ref, base = "bpjax.fit", "jax.grad + optax in lax.scan"
    rows, ratios, cpu_ratios, worst_agree = [], [], [], {"float32": 0.0, "float64": 0.0}
    for s, B, opt in cells(cfg):
        shape = SHAPES[s]
        steps = cfg["epochs"] * cfg["N"] // B
        t = interleave(cell_factories(shape, B, opt, cfg), repeats, log=lambda _: None,
                       min_time_s=cfg["min_time_s"])
        r = ratio(t[base].median_s, t[ref].median_s)
        r_cpu = ratio(statistics.median(t[base].cpu_s), statistics.median(t[ref].cpu_s))
        # the spread of the ratio: each round's, min to max
        per_round = [b / a for a, b in zip(t[ref].steady_s, t[base].steady_s)]
        la, lb = t[ref].summary["final_loss"], t[base].summary["final_loss"]
        agree = abs(la - lb) / abs(lb)
        worst_agree[shape[3]] = max(worst_agree[shape[3]], agree)
        ratios.append(r)
        cpu_ratios.append(r_cpu)
        rows.append([shape[0], shape[3], B, opt, steps, t[ref].median_s / steps * 1e6,
                     t[base].median_s / steps * 1e6, r,
                     f"{min(per_round):.2f}–{max(per_round):.2f}", r_cpu, t[ref].compile_s,
                     t[base].compile_s, f"{agree:.1e}"])
        log(f"  {shape[0]:<30s} B={B:<4d} {opt:<5s} bpjax {rows[-1][5]:8.2f} µs/step  "
            f"jax {rows[-1][6]:8.2f} µs/step  ratio {r:5.2f} ({rows[-1][8]}, CPU time "
            f"{r_cpu:.2f})  Δloss {agree:.1e}")
    worst, median = min(ratios), statistics.median(ratios)
    worst_cpu, median_cpu = min(cpu_ratios), statistics.median(cpu_ratios)
    return {
        "reference": ref,
        "tables": [{
            "title": "bp.fit(batch_size=B) against jax.grad + optax in lax.scan, per cell",
            "columns": ["shape", "dtype", "B", "optimizer", "steps", "bpjax (µs/step)",
                        "jax.grad+optax (µs/step)", "ratio", "ratio per round",
                        "ratio of CPU times", "bpjax compile (s)", "jax compile (s)",
                        "Δ final loss (rel)"],
            "rows": rows,
        }],
        "checks": [{
            "name": f"same training, {dtype} cells",
            "ok": bool(worst_agree[dtype] <= rtol),
            "detail": f"final losses (evaluated in float64) agree to {worst_agree[dtype]:.1e} "
                      f"relative at worst (tolerance {rtol:g}){why}",
        } for dtype, rtol, why in (
            ("float64", 1e-9, ""),
            ("float32", 5e-2, ": the two take the same steps, but float32 rounds them "
             "differently, and hundreds of Adam steps on a noisy target amplify that (Adam "
             "moves each weight by about its rate whatever the gradient's size, so a near-zero "
             "gradient's sign decides)"))],
        "targets": targets(worst),
        "extra": {"worst": worst, "median": median, "worst_cpu": worst_cpu,
                  "median_cpu": median_cpu, "cells": len(ratios)},
        "notes": [
            f"{len(ratios)} cells: N = {cfg['N']}, {cfg['epochs']} epochs a call, dataset "
            f"order; Adam at 1e-3, plain SGD at η = {cfg['sgd_learning_rate']}. Times per "
            "step include everything a call does (checks, optimizer init, compiled loop, "
            "loss after every epoch, result), divided by the number of steps. ratio = "
            "jax.grad+optax time / bpjax time (> 1: bpjax faster): worst "
            f"{worst:.2f}, median {median:.2f}. 'ratio per round' is the spread of the "
            "ratio over the interleaved rounds (a shared machine: read the medians); 'ratio "
            "of CPU times' compares the medians of the process's CPU time instead of wall "
            f"time (worst {worst_cpu:.2f}, median {median_cpu:.2f}), which other processes "
            "on the machine do not stretch.",
        ],
    }


def targets(worst=None) -> list:
    return [target("worst ratio, jax.grad+optax time / bp.fit time", worst, ">=", 1.0, "×")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--shapes", default="", help="indices into SHAPES, e.g. 0,3")
    p.add_argument("--batch", default="", help="batch sizes, e.g. 16,64")
    p.add_argument("--opt", default="", help="adam,sgd")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    cfg = config(args.quick)
    if args.shapes:
        cfg["shapes"] = tuple(int(s) for s in args.shapes.split(","))
        cfg["issue_cells"] = ()
    if args.batch:
        cfg["batch_sizes"] = tuple(int(b) for b in args.batch.split(","))
    if args.opt:
        cfg["optimizers"] = tuple(args.opt.split(","))
    out = run_grid(cfg, args.repeats or cfg["repeats"], print)
    e = out["extra"]
    print(f"worst {e['worst']:.2f}, median {e['median']:.2f} (CPU time: worst "
          f"{e['worst_cpu']:.2f}, median {e['median_cpu']:.2f}); "
          f"{out['checks'][0]['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
