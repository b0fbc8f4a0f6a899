"""Algorithm 1, line 6, one sample at a time: ``w ← w − (η/N) ∂L/∂w(x_i)``, fused and on vectors.

| paper (Algorithm 1)                       | code                                          |
| ----------------------------------------- | --------------------------------------------- |
| line 4: ``for i ∈ [N]``, in dataset order | :func:`algorithm1_epoch`: a ``lax.scan``      |
| line 6: ``w ← w − (η/N) ∂L/∂w(x_i)``      | :func:`_sample_sgd_step`                      |
| ``∂L/∂w(x_i)`` starts from ``∂ℓ_i/∂φ^L``  | ``backward.loss_deltas(..., loss, ...)``      |
| ``a^l = φ_in W^l`` (with the bias row)    | ``h @ _Weights`` (``__rmatmul__``)            |
| (3): ``Σ_k w^l_jk δ^l_k``                 | ``_Weights @ d`` (``__matmul__``)             |

``∂L/∂w(x_i)`` is sample ``i``'s term of the gradient without the ``1/N``, computed by the
hand-written delta rule of :mod:`bpjax.backward` from the loss's ``∂ℓ_i/∂φ^L`` (``φ^L − y``
for loss (1)), or from its fused ``δ^L`` (:mod:`bpjax.losses`); the loss is static: part of
what the loop is compiled for. The step is one fused jitted body on vectors:
forward pass, deltas and rank-1 updates ``w^l ← w^l − (η/N) [φ_0 | φ_in] ⊗ δ^l``, biases and
weights of a layer in one array and one kernel.

**How a step is laid out.** XLA:CPU runs a step as a chain of small kernels, and what a
kernel costs depends on the shapes more than on the arithmetic. :func:`layer_plan` chooses,
for each layer and from its shape alone, the layout that the measurements behind its rules
(below) found cheapest; every choice computes the same numbers up to rounding:

* the rank-1 update ``W ← W − c φ_in ⊗ δ`` is one elementwise loop, vectorised over the minor
  axis only when that axis is long: a layer with few neurons and many inputs (an output
  layer ``200 → 10``) keeps ``W^l`` transposed, ``(N_l, fan_in)``, during the epoch;
* a product of a vector with a small matrix, or one whose output has few entries, is a
  broadcast sum rather than a matrix-product call (whose fixed cost dominates there);
* the next sample (``x`` and ``y``, one row) is fetched into the loop's carry one step ahead,
  so no kernel reads it through an index (an indexed read in the minor axis of the update
  loop stops XLA from vectorising it: measured 13x slower on ``100 × 200``);
* a loop iteration takes one step when a step fits in the 8 kernels XLA:CPU runs one after
  the other, two otherwise (see :func:`algorithm1_epoch`);
* a large layer (``≥ 32768`` weights, none of them masked) defers its rank-1 updates over
  blocks of ``16`` samples and folds them in at once; every sample still sees the weights
  left by the one before (see :class:`_Weights`), so this is Algorithm 1 up to
  floating-point rounding.

On a CPU the per-sample loop is compiled with :data:`SEQUENTIAL_CPU`: its steps are too small
and too sequential to share between cores. Those are XLA:CPU options, not part of JAX's API:
:func:`sequential_jit` compiles with the ones the installed jaxlib accepts (probed once, see
:mod:`bpjax.compilation`), the vector width chosen per network (:func:`loop_options`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax.backward import loss_deltas, sample_weight_gradients
from bpjax.clamping import apply_update
from bpjax.compilation import CpuJit
from bpjax.forward import homogenised, join, layer_inputs, propagate_split, split
from bpjax.losses import SQUARED

__all__ = ["SEQUENTIAL_CPU", "TINY", "Plan", "algorithm1_epoch", "layer_plan", "loop_options",
           "network_plan", "sample_gradient", "sequential", "sequential_jit", "vector_width"]

TINY = 40  # networks with at most this many weights: XLA compiles their whole per-sample
# loop into one kernel, which unrolling the scan would prevent (a 10x loss)

# The cost model of a step, from single-kernel loops measured on XLA:CPU (jaxlib 0.10, one
# core, float32 and float64; benchmarks/grid.py reports the whole steps):
_WIDE = 40  # an elementwise loop over (R, C) is vectorised only from C ≈ 40 on: below, about
# 0.3 ns an entry, above 0.05 (e.g. the update of 512 × 32: 5.5 µs, of 32 × 512: 0.8 µs)
_NARROW = 8  # v @ S with at most this many columns is a broadcast sum: the matrix-product
# call costs ~4 ns a row there (1 × 512 @ 512 × 3: 2.1 µs, the sum 0.4 µs)
_ROW_BYTES = 32  # S @ u is a broadcast sum while a row of S is at most this long (one vector
# register: 8 float32 or 4 float64; 512 × 3 @ 3: 0.6 µs as a call, 0.18 as a sum)
_L1_BYTES = 32 * 1024  # v @ S as a broadcast sum over the rows of S: cheaper than the call
# while S fits a core's L1 cache and has at most 32 rows (8 × 512: 0.22 vs 0.24 µs;
# 32 × 512: 1.2 vs 0.76)
_UNROLL_MAX = 4096  # networks with more weights step one sample per loop iteration
_SEQUENTIAL_KERNELS = 8  # XLA:CPU runs a loop body of at most this many kernels in order
_BLOCK = 16  # samples whose rank-1 updates of a deferred layer are folded in at once
_DEFER_MIN = 1 << 15  # entries of a layer worth deferring: the update pass costs ~0.045 ns an
# entry in L2 (≥ 0.07 beyond), folding a block of 16 in ~0.026 (_fold), the four products
# with the factors ~0.6 µs a sample: deferring pays from ~32K entries (measured: 128-512-512-
# 512-10, 107 → 85 µs a step; 64-256-256-1 and 100-200-10 unchanged; 64 × 64 layers 2.7 → 3.5)


class Plan(NamedTuple):
    """How one layer's weights ``W^l`` (``fan_in × N_l``) are kept and applied in a step.

    Attributes:
      transposed: ``W^l`` is kept as ``(N_l, fan_in)`` during the epoch.
      forward_sum: ``a^l = φ_in W^l`` is a broadcast sum rather than a matrix product.
      backward_sum: equation (3), ``W^l δ^l``, is a broadcast sum rather than a matrix product.
      deferred: the rank-1 updates are deferred over blocks of samples (see :class:`_Weights`).
    """

    transposed: bool = False
    forward_sum: bool = False
    backward_sum: bool = False
    deferred: bool = False


def _row_sum(R: int, C: int, itemsize: int) -> bool:
    """Whether ``v @ S`` for ``S`` of shape ``(R, C)`` is cheaper as a broadcast sum."""
    return C <= _NARROW or (R <= 32 and R * C * itemsize <= _L1_BYTES)


def layer_plan(fan_in: int, size: int, itemsize: int, deferred: bool = False) -> Plan:
    """The :class:`Plan` of a layer with ``fan_in`` inputs and ``size`` neurons.

    Args:
      fan_in: the number of rows ``j ≥ 1`` of ``W^l``.
      size: ``N_l``.
      itemsize: bytes per weight (4 for float32, 8 for float64).
      deferred: whether the layer's updates are deferred (see :func:`network_plan`).
    """
    transposed = size < _WIDE <= fan_in  # the update loop then runs over fan_in
    R, C = (size, fan_in) if transposed else (fan_in, size)  # the matrix a product reads
    row_sum = _row_sum(R, C, itemsize)  # v @ S
    col_sum = C * itemsize <= _ROW_BYTES  # S @ u
    return Plan(transposed=transposed,
                forward_sum=col_sum if transposed else row_sum,
                backward_sum=row_sum if transposed else col_sum,
                deferred=deferred)


def network_plan(net, itemsize: int, masks=None) -> tuple[Plan, ...]:
    """The :class:`Plan` of every layer of ``net`` for a per-sample loop.

    Layers of at least :data:`_DEFER_MIN` weights that no mask touches defer their updates
    over blocks of :data:`_BLOCK` samples: their weights are then read twice a sample (the
    forward and backward products) instead of read three times and written once, at the
    price of folding each block in (:func:`_fold`) and four small products a sample.
    """
    masks = masks if masks is not None else (None,) * net.depth
    return tuple(
        layer_plan(net.fan_in(l), net.layer(l).size, itemsize,
                   deferred=(masks[l - 1] is None
                             and net.fan_in(l) * net.layer(l).size >= _DEFER_MIN))
        for l in range(1, net.depth + 1))


def _vm(v, S, as_sum):
    """``v @ S``: the sum over the rows of ``S``."""
    return (v[:, None] * S).sum(0) if as_sum else v @ S


def _mv(S, u, as_sum):
    """``S @ u``: the sum over the columns of ``S``."""
    return (S * u).sum(1) if as_sum else S @ u


class _Weights:
    """A layer's weights ``w^l`` in a step, bias row included, kept and applied as its
    :class:`Plan` says.

    ``P`` is ``params[l-1]`` (``1 + fan_in`` rows, row 0 the bias) or, transposed, its
    transpose; it is applied to the homogenised input ``[φ_0 | φ_in]`` (``φ_0 = 1``, or ``0``
    without bias: :func:`bpjax.forward.homogenised`), so that one kernel updates a layer's
    biases and weights together. A deferred layer in the middle of a block of samples is
    ``P + Aᵀ B``: Algorithm 1 changes every weight after every sample by a rank-1 term,
    ``−(η/N) [φ_0 | φ_in(x_i)] δ^l(x_i)ᵀ``; inside a block the terms are kept as the rows of
    ``A = −(η/N) [φ_0 | φ_in(x_i)]`` ``(block, 1 + fan_in)`` and ``B = [δ^l(x_i)]``
    ``(block, N_l)`` (zero rows for samples to come), and the current weights are applied to
    vectors without being formed — the same numbers as the updated matrix, up to rounding.
    :func:`_fold` adds them into ``P`` at the end of the block.
    """

    __slots__ = ("P", "A", "B", "plan", "bias")

    def __init__(self, P, A, B, plan, bias):
        self.P, self.A, self.B, self.plan, self.bias = P, A, B, plan, bias

    def __rmatmul__(self, h):  # a^l = [φ_0 | φ_in] (P + Aᵀ B)
        p, P = self.plan, self.P
        if p.forward_sum:  # the bias row added apart: the sum reads P in place, and a reduction
            # over at most 32 rows stays one kernel (XLA:CPU splits longer ones in three)
            bias, W = (P[:, 0], P[:, 1:]) if p.transposed else (P[0], P[1:])
            a = _mv(W, h, True) if p.transposed else _vm(h, W, True)
            a = a + bias if self.bias else a
        else:  # one call on the homogenised input: no copy of P without its bias row
            hh = homogenised(h, self.bias)
            a = P @ hh if p.transposed else hh @ P
        if self.A is None:
            return a
        return a + (self.A @ homogenised(h, self.bias)) @ self.B

    def __matmul__(self, d):  # equation (3): the rows j ≥ 1 of (P + Aᵀ B) δ
        p, P = self.plan, self.P
        if p.backward_sum:  # the sum reads the rows j ≥ 1 in place
            g = _vm(d, P[:, 1:], True) if p.transposed else _mv(P[1:], d, True)
        else:  # one call on the whole of P, then the rows j ≥ 1
            g = (d @ P if p.transposed else P @ d)[1:]
        return g if self.A is None else g + ((self.B @ d) @ self.A)[1:]


def _fold(P, A, B, plan):
    """``P`` with a block's deferred terms ``Aᵀ B`` added (``Bᵀ A`` if kept transposed).

    A broadcast sum over the block's rows: one loop vectorised over ``P``'s minor axis, which
    XLA:CPU runs faster than its matrix-product call for a block of 16 rows (512 × 512: 79
    against 55 GFLOP/s).
    """
    if A is None:
        return P
    U, V = (B, A) if plan.transposed else (A, B)
    return P + (U[:, :, None] * V[:, None, :]).sum(0)


def _sample_sgd_step(net, loss, plans, eta_over_N, masks, theta, x, y, r, slot):
    """Algorithm 1, line 6, for one sample: ``w ← w − (η/N) ∂L/∂w(x_i)``, on vectors.

    ``theta = (P, A, B)``: each layer's weights (``params[l-1]``, kept as :class:`Plan` says)
    and, for each deferred layer, the factors of :class:`_Weights` (else ``None``); ``(x, y)``
    the sample, ``r`` its weight ``s_i N / Σ s`` (or None), ``slot`` its place in its block of
    deferred updates. The forward pass, the hand-written deltas and the updates
    ``w ← w − (η/N) [φ_0 | φ_in] ⊗ δ^l`` are fused in one step.
    """
    P, A, B = theta
    weights = tuple(_Weights(w, a, b, p, layer.bias)
                    for w, a, b, p, layer in zip(P, A, B, plans, net.layers))
    tr = propagate_split(net, None, weights, x)
    delta = loss_deltas(net, weights, tr, y, loss, r, bias_row=False)  # no 1/N: η/N below
    P, A, B = list(P), list(A), list(B)
    for l, (p, layer) in enumerate(zip(plans, net.layers), start=1):
        h = homogenised(layer_inputs(net, tr.phi, l), layer.bias)  # ∂a^l_r/∂w^l_pr = φ_p
        if A[l - 1] is None:  # (structural zeros: their mask keeps them)
            g = jnp.outer(delta[l], h) if p.transposed else jnp.outer(h, delta[l])
            P[l - 1] = apply_update(P[l - 1], -eta_over_N * g, masks[l - 1])
        else:  # the rank-1 term, kept as its two factors
            A[l - 1] = jax.lax.dynamic_update_index_in_dim(A[l - 1], -eta_over_N * h, slot, 0)
            B[l - 1] = jax.lax.dynamic_update_index_in_dim(B[l - 1], delta[l], slot, 0)
    return tuple(P), tuple(A), tuple(B)


def _kernels(net, plans) -> int:
    """About how many XLA:CPU kernels one step runs: per layer the update, and the forward
    product (one kernel as a sum with the activation, three if it sums more than 32 rows,
    which XLA splits; three as a call: the homogenised input, the call, the activation) and
    equation (3) (none as a sum, fused into its users; one as a call); two more to fetch the
    next sample and to count."""
    n = 2
    for l, p in enumerate(plans, start=1):
        rows = net.layer(l).size if p.transposed else net.fan_in(l)
        n += 1 + (3 if not p.forward_sum or rows > 32 else 1)
        n += 0 if l == 1 or p.backward_sum else 1
        n += 4 if p.deferred else 0
    return n


def algorithm1_epoch(net, eta_over_N, masks, params, X, Y, loss=SQUARED, r=None):
    """One epoch of Algorithm 1 with plain SGD: every sample in order, one step each.

    ``r`` ``(N,)``: per-sample weights as ``r_i = s_i N / Σ s``, so that sample ``i`` steps by
    ``η s_i / Σ s`` (``η/N`` when None).
    Each layer is kept and applied as :func:`network_plan` says; deferred layers fold their
    updates in every ``_BLOCK`` samples, and the ``N mod _BLOCK`` last samples step directly.
    A network of at most :data:`TINY` weights scans over the samples as they are: XLA compiles
    its whole loop into one kernel, where fetching ahead only adds work.

    **How many steps a loop iteration takes.** XLA:CPU runs the kernels of a loop body one
    after the other only if there are at most :data:`_SEQUENTIAL_KERNELS` of them (or all
    their buffers are tiny); beyond, it schedules them as a graph, at a cost per kernel and
    per iteration that dominates a small network's step (8-32-1: 0.48 → 0.29 µs a step once
    its step fits in 8 kernels). So an iteration takes one step when a step fits
    (:func:`_kernels` estimates it), and otherwise two for networks of at most
    :data:`_UNROLL_MAX` weights (halving the per-iteration cost), one above.
    """
    plans = network_plan(net, X.dtype.itemsize, masks)
    masks = masks if masks is not None else (None,) * net.depth
    masks = tuple(None if m is None else (m.T if p.transposed else m)
                  for m, p in zip(masks, plans))
    P = tuple(w.T if p.transposed else w for w, p in zip(params, plans))
    none = (None,) * net.depth
    D, d = X.shape[1], Y.shape[1]
    # one row, one kernel, per sample fetched: [x | y] and the sample's weight r_i if any
    XY = jnp.concatenate([X, Y] + ([] if r is None else [r[:, None].astype(X.dtype)]), axis=1)

    def step(theta, xy, slot):
        return _sample_sgd_step(net, loss, plans, eta_over_N, masks, theta, xy[:D],
                                xy[D:D + d], None if r is None else xy[D + d], slot)

    if net.num_params <= TINY:
        (P, _, _), _ = jax.lax.scan(lambda theta, xy: (step(theta, xy, 0), None),
                                    (P, none, none), XY)
        return P  # (a tiny network keeps no layer transposed: fan_in < _WIDE)

    def fetched(carry, index):  # steps on the sample in the carry, fetches row j for the next
        theta, xy = carry
        j, slot = index
        theta = step(theta, xy, slot)
        return (theta, jax.lax.dynamic_index_in_dim(XY, j, keepdims=False)), None

    N = X.shape[0]
    following = jnp.minimum(jnp.arange(1, N + 1), N - 1)  # the row each step fetches
    place = jnp.arange(N) % _BLOCK
    if _kernels(net, plans) <= _SEQUENTIAL_KERNELS - 2:  # (a margin: the estimate can miss
        unroll = 1  # a kernel or two) run in order; two steps would not be
    else:
        unroll = 2 if net.num_params <= _UNROLL_MAX else 1
    carry = ((P, none, none), XY[0])
    blocks = N // _BLOCK if any(p.deferred for p in plans) else 0
    if blocks:
        def block(carry, index):
            (P, _, _), xy = carry
            A = tuple(jnp.zeros((_BLOCK, 1 + net.fan_in(l)), X.dtype) if p.deferred else None
                      for l, p in enumerate(plans, start=1))
            B = tuple(jnp.zeros((_BLOCK, net.layer(l).size), X.dtype) if p.deferred else None
                      for l, p in enumerate(plans, start=1))
            ((P, A, B), xy), _ = jax.lax.scan(fetched, ((P, A, B), xy), index, unroll=unroll)
            P = tuple(_fold(w, a, b, p) for w, a, b, p in zip(P, A, B, plans))
            return ((P, none, none), xy), None

        n = blocks * _BLOCK
        index = (following[:n].reshape(blocks, _BLOCK), place[:n].reshape(blocks, _BLOCK))
        carry, _ = jax.lax.scan(block, carry, index)
        following, place = following[n:], place[n:]
    if following.shape[0]:
        carry, _ = jax.lax.scan(fetched, carry, (following, place), unroll=unroll)
    return tuple(w.T if p.transposed else w for w, p in zip(carry[0][0], plans))


def sample_gradient(net, params, x, y, r, N, loss=SQUARED):
    """``G_B = (1/N) ∂L/∂w(x_i)`` for one sample, shaped like ``params``; weighted by
    ``r = s_i N / Σ s`` unless ``r`` is None."""
    w0, W = split(params)
    tr = propagate_split(net, w0, W, x)
    g0, gW = sample_weight_gradients(net, tr, loss_deltas(net, W, tr, y, loss, r, bias_row=False))
    return jax.tree.map(lambda g: g / N, join(g0, gW))


# How XLA:CPU compiles a loop of per-sample steps (fit and sweep with batch_size=1), measured
# on 2 cores (benchmarks W1, W2, W4):
# * XLA:CPU runs independent operations, and large elementwise ones split in parts, on a pool
#   of threads. A per-sample step is a long chain of small operations on weights that stay in
#   one core's cache: handing parts of it to another core costs more than it saves. Without
#   parallel task assignment the step stays on the calling thread (W1: 20 → 12 µs a step).
# * Copy insertion with region analysis drops copies XLA otherwise makes of the carried
#   weights and factors in every step (16-64-64-64-3: 3.7 → 2.8 µs, 128-512-512-512-10:
#   124 → 87 µs a step).
# * YNNPACK fusions cost ~0.1 ms to launch: 7x the whole loss (1) of a small network each epoch.
# * 512-bit vectors where the CPU has them: the matrix-vector products of a step (W1: -15%);
#   fit compiles a network whose layers are all narrower than 256 neurons with 256-bit vectors
#   (vector_width): its loops are short, and 3-10% faster so (16-64-64-64-3, 100-200-10,
#   10-16-16-16-16-10), where 256-neuron layers are 2-7% faster with 512 bits.
SEQUENTIAL_CPU = {
    "xla_disable_hlo_passes": "cpu-parallel-task-assigner",
    "xla_cpu_copy_insertion_use_region_analysis": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_prefer_vector_width": 512,
}


_WIDE_NETWORK = 256  # neurons in a layer from which the loop is compiled for 512-bit vectors


def vector_width(net) -> int:
    """The vector width (bits) that ``net``'s per-sample loop prefers (see SEQUENTIAL_CPU)."""
    return 512 if max(net.sizes[1:]) >= _WIDE_NETWORK else 256


def sequential(config, data) -> bool:
    """Whether the loop takes per-sample steps on a CPU (compile it with ``SEQUENTIAL_CPU``)."""
    return config.batch == 1 and all(d.platform == "cpu" for d in data.X.devices())


def loop_options(net) -> dict:
    """The values of :data:`SEQUENTIAL_CPU` that depend on ``net``: its :func:`vector_width`."""
    return {"xla_cpu_prefer_vector_width": vector_width(net)}


def sequential_jit(fun, *, per_network=loop_options, **jit_kwargs) -> CpuJit:
    """``jax.jit(fun, **jit_kwargs)`` for a per-sample loop: a :class:`~bpjax.compilation.CpuJit`
    with :data:`SEQUENTIAL_CPU` (the options this jaxlib accepts, probed once; on a CPU only),
    their values per network from ``per_network`` (``fun``'s first argument is the network)."""
    return CpuJit(fun, SEQUENTIAL_CPU, what="the per-sample loop (batch_size=1 on a CPU)",
                  per_network=per_network, **jit_kwargs)
