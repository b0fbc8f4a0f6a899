"""Workloads W6-W7: the paper's derivatives as objects (issue 15).

* **W6**, the per-sample Jacobian ``∂φ_θ(x_i)/∂w`` of a plain tanh MLP: ``bp.jacobian`` (both
  modes) against ``jax.jacrev`` / ``jax.jacfwd`` of the plain-JAX MLP of
  :mod:`benchmarks.baselines`, on the whole batch (what a user writes first: the weights are
  shared, so the batch Jacobian *is* the per-sample one) and per sample under ``jax.vmap``.
* **W7**, per-sample gradient norms and DP-SGD's clipped sum: ``bp.ghost_norms`` and
  ``bp.clipped_grad_sum`` against ``jax.vmap(jax.grad)``, which forms every ``g_i``.

Every competitor is jitted, starts from the same float32 weights and returns the same numbers;
the summaries check that they agree. Memory is the harness's peak-RSS probe (see
:mod:`benchmarks.harness`): the point of ghost norms is what they do not allocate.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import bpjax as bp
from benchmarks import baselines as B
from benchmarks.harness import Runner, Timing, ratio


def _net(sizes) -> bp.Network:
    """A dense ``sizes[0]-...-sizes[-1]`` net: tanh hidden layers, identity output."""
    return bp.Network(sizes[0], [*(bp.Layer(n, "tanh") for n in sizes[1:-1]),
                                 bp.Layer(sizes[-1], "identity")])


def _data(N, D, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D)).astype(np.float32)
    Y = np.sin(X[:, :d] + X[:, -1:]).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(Y)


def _device() -> str:
    return jax.devices()[0].platform


def _as_layers(jac) -> tuple:
    """A JAX Jacobian over ``[(W, b), ...]`` → bpjax's layout ``(N, d, 1 + fan_in, N_l)``."""
    return tuple(jnp.concatenate([jb[:, :, None], jW], axis=2) for jW, jb in jac)


def _worst_gap(results: dict[str, tuple], reference: str) -> tuple[float, str]:
    """The largest ``max |Δ| / max |ref|`` over layers, against the reference's arrays."""
    ref, worst, who = results[reference], 0.0, reference
    for name, arrays in results.items():
        for a, b in zip(arrays, ref):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            gap = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
            if gap > worst:
                worst, who = gap, name
    return worst, who


def _ratios(t: dict[str, Timing], reference: str) -> dict[str, float]:
    return {name: ratio(tm.median_s, t[reference].median_s) for name, tm in t.items()}


# --------------------------------------------------------------------------- W6


def w6_config(quick: bool) -> dict:
    return {"sizes": (16, 32, 32, 4), "N": 64 if quick else 256, "repeats": 2 if quick else 7,
            "min_time_s": 0.02 if quick else 0.1}


def w6_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    net = _net(cfg["sizes"])
    params = bp.init(net, jax.random.key(7))
    X, _ = _data(cfg["N"], cfg["sizes"][0], cfg["sizes"][-1], seed=7)
    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    keep = lambda J: {"J": tuple(np.asarray(j) for j in J)}

    def bpjax(mode):
        def make():
            return Runner(lambda: jax.block_until_ready(bp.jacobian(net, params, X, mode)),
                          keep, _device(), f"mode={mode!r}")
        return make

    def plain(transform, per_sample):
        if per_sample:  # one x at a time, vmapped: (d, ...) per sample
            one = transform(lambda m, x: B.jax_mlp_forward(m, x[None])[0])
            f = jax.jit(jax.vmap(one, in_axes=(None, 0)))
        else:  # the batch function: its Jacobian is the per-sample one (shared weights)
            f = jax.jit(transform(B.jax_mlp_forward))

        def make():
            return Runner(lambda: jax.block_until_ready(f(mlp, X)),
                          lambda J: keep(_as_layers(J)), _device())
        return make

    return {
        "bp.jacobian (auto)": bpjax("auto"),
        "bp.jacobian forward": bpjax("forward"),
        "bp.jacobian reverse": bpjax("reverse"),
        "jax.jacrev, batch": plain(jax.jacrev, False),
        "jax.jacfwd, batch": plain(jax.jacfwd, False),
        "vmap(jax.jacrev), per sample": plain(jax.jacrev, True),
        "vmap(jax.jacfwd), per sample": plain(jax.jacfwd, True),
    }


def w6_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    ref = "bp.jacobian (auto)"
    arrays = {name: tm.summary.pop("J") for name, tm in t.items()}
    gap, who = _worst_gap(arrays, ref)
    net = _net(cfg["sizes"])
    from bpjax.jacobian import costs, resolve_mode

    c = costs(net)
    size = cfg["N"] * net.outputs * net.num_params
    return {
        "ratios": _ratios(t, ref),
        "checks": [{"name": "same Jacobian", "ok": bool(gap < 1e-4),
                    "detail": f"max |Δ| / max |J| = {gap:.1e} against {ref} (worst: {who}; "
                              f"float32, tolerance 1e-4)"}],
        "extra": {"costs": c, "auto": resolve_mode(net, "auto"), "J_entries": size},
        "notes": [
            f"J holds N·d·P = {cfg['N']}·{net.outputs}·{net.num_params} = {size:,} numbers "
            f"({size * 4 / 2**20:.1f} MiB in float32). bpjax's propagation counts "
            f"(`bpjax.jacobian.costs`, multiply-adds per sample): forward {c['forward']:,}, "
            f"reverse {c['reverse']:,}; auto takes {resolve_mode(net, 'auto')}. jax.jacrev of "
            "the batch function pulls back N·d one-hot cotangents through the whole batch "
            "(O(N² d P)); jax.jacfwd pushes P tangents (O(N P²)); their vmapped per-sample "
            "forms cost O(N d P) and O(N P²)."
        ],
    }


# --------------------------------------------------------------------------- W7


def w7_config(quick: bool) -> dict:
    return {"sizes": (64, 256, 256, 1), "N": 128 if quick else 512, "clip": 1.0,
            "repeats": 2 if quick else 7, "min_time_s": 0.02 if quick else 0.1}


def w7_factories(cfg: dict) -> dict[str, Callable[[], Runner]]:
    net = _net(cfg["sizes"])
    params = bp.init(net, jax.random.key(8))
    X, Y = _data(cfg["N"], cfg["sizes"][0], cfg["sizes"][-1], seed=8)
    mlp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in B.to_mlp(params)]
    C = cfg["clip"]

    def sample_loss(m, x, y):
        r = B.jax_mlp_forward(m, x[None])[0] - y
        return 0.5 * jnp.sum(r * r)

    per_sample = jax.vmap(jax.grad(sample_loss), in_axes=(None, 0, 0))

    @jax.jit
    def vmap_norms(m, X, Y):
        g = per_sample(m, X, Y)
        return sum(jnp.sum(gW**2, axis=(1, 2)) + jnp.sum(gb**2, axis=1) for gW, gb in g)

    @jax.jit
    def vmap_clipped(m, X, Y):
        g = per_sample(m, X, Y)
        sq = sum(jnp.sum(gW**2, axis=(1, 2)) + jnp.sum(gb**2, axis=1) for gW, gb in g)
        c = jnp.minimum(1.0, C / jnp.sqrt(sq))
        return [(jnp.einsum("i,ipr->pr", c, gW), c @ gb) for gW, gb in g], sq

    def norms_of(sq):
        return {"sq": (np.asarray(sq),)}

    def clipped_of(out):
        g, sq = out
        return {"sq": (np.asarray(sq),), "grads": tuple(
            np.concatenate([np.asarray(gb)[None], np.asarray(gW)]) for gW, gb in g)}

    def run(f, finish, note=""):
        return lambda: Runner(lambda: jax.block_until_ready(f()), finish, _device(), note)

    return {
        "bp.ghost_norms": run(lambda: bp.ghost_norms(net, params, X, Y).total, norms_of),
        "bp.clipped_grad_sum": run(
            lambda: bp.clipped_grad_sum(net, params, X, Y, clip=C),
            lambda o: {"sq": (np.asarray(o.norms.total),),
                       "grads": tuple(np.asarray(g) for g in o.grads)}),
        "vmap(grad) norms": run(lambda: vmap_norms(mlp, X, Y), norms_of),
        "vmap(grad) clipped sum": run(lambda: vmap_clipped(mlp, X, Y), clipped_of),
        "bp.per_example_backprop norms": run(
            lambda: sum(jnp.sum(g**2, axis=(1, 2)) for g in bp.per_example_backprop(
                net, params, X, Y)), norms_of, "materialises the per-sample gradients"),
    }


def w7_summary(cfg: dict, t: dict[str, Timing]) -> dict:
    sq = {name: tm.summary.pop("sq") for name, tm in t.items()}
    grads = {name: tm.summary.pop("grads") for name, tm in t.items() if "grads" in tm.summary}
    gap_n, who_n = _worst_gap(sq, "bp.ghost_norms")
    gap_g, who_g = _worst_gap(grads, "bp.clipped_grad_sum")
    net = _net(cfg["sizes"])
    per = cfg["N"] * net.num_params
    r = _ratios(t, "bp.ghost_norms")
    r_clip = ratio(t["vmap(grad) clipped sum"].median_s, t["bp.clipped_grad_sum"].median_s)
    return {
        "ratios": r,
        "checks": [
            {"name": "same norms", "ok": bool(gap_n < 1e-4),
             "detail": f"squared norms agree to {gap_n:.1e} (worst: {who_n}; tolerance 1e-4)"},
            {"name": "same clipped sum", "ok": bool(gap_g < 1e-4),
             "detail": f"clipped sums agree to {gap_g:.1e} (worst: {who_g}; tolerance 1e-4)"},
        ],
        "extra": {"clipped_sum_speedup_vs_vmap_grad": r_clip, "per_sample_gradient_entries": per},
        "notes": [
            f"The per-sample gradients hold N·P = {cfg['N']}·{net.num_params} = {per:,} numbers "
            f"({per * 4 / 2**20:.0f} MiB in float32); ghost norms need the activations and "
            f"deltas only. Clipped sum with C = {cfg['clip']}: vmap(grad) takes "
            f"{r_clip:.2f}× the time of bp.clipped_grad_sum. *ratio* against bp.ghost_norms."
        ],
    }
