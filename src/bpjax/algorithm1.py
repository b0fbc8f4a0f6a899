"""Algorithm 1, line 6, one sample at a time: ``w ← w − (η/N) ∂L/∂w(x_i)``, fused and on vectors.

| paper (Algorithm 1)                       | code                                          |
| ----------------------------------------- | --------------------------------------------- |
| line 4: ``for i ∈ [N]``, in dataset order | :func:`algorithm1_epoch`: a ``lax.scan``      |
| line 6: ``w ← w − (η/N) ∂L/∂w(x_i)``      | :func:`_sample_sgd_step`                      |
| ``∂L/∂w(x_i)`` starts from ``∂ℓ_i/∂φ^L``  | ``backward.loss_deltas(..., loss, ...)``      |

``∂L/∂w(x_i)`` is sample ``i``'s term of the gradient without the ``1/N``, computed by the
hand-written delta rule of :mod:`bpjax.backward` from the loss's ``∂ℓ_i/∂φ^L`` (``φ^L − y``
for loss (1)), or from its fused ``δ^L`` (:mod:`bpjax.losses`); the loss is static: part of
what the loop is compiled for. The step is one fused jitted body on vectors:
forward pass, deltas and rank-1 updates, with the biases kept apart from the other weights.
A large layer (``≥ 4096`` weights, none of them clamped or structural zeros) defers its
rank-1 updates over blocks of 16 samples and applies them as one matrix product; every sample
still sees the weights left by the one before (see :class:`_DeferredW`), so this is Algorithm 1
up to floating-point rounding. On a CPU the per-sample loop is compiled with
:data:`SEQUENTIAL_CPU`: its steps are too small and too sequential to share between cores.
Those are XLA:CPU options, not part of JAX's API: :func:`sequential_cpu_options` keeps the
ones the installed jaxlib accepts (probed once), and :class:`SequentialJit` compiles with them.
"""

from __future__ import annotations

import functools
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from bpjax.backward import loss_deltas, sample_weight_gradients
from bpjax.clamping import apply_update
from bpjax.forward import join, layer_inputs, propagate_split, split
from bpjax.losses import SQUARED

__all__ = ["SEQUENTIAL_CPU", "TINY", "SequentialJit", "algorithm1_epoch", "sample_gradient",
           "sequential", "sequential_cpu_options"]

_BLOCK = 16  # samples whose rank-1 updates of a large layer are deferred, then applied at once
_DEFER_MIN = 4096  # a layer's updates are deferred when its W^l has at least this many entries
TINY = 40  # networks with at most this many weights: XLA compiles their whole per-sample
# loop into one kernel, which unrolling the scan would prevent (a 10x loss)


class _DeferredW:
    """A layer's weights ``w^l_{j≥1,k}`` in the middle of a block of samples: ``W + Aᵀ B``.

    Algorithm 1 changes every weight after every sample by a rank-1 term,
    ``−(η/N) φ_in(x_i) δ^l(x_i)ᵀ``. Inside a block the terms are kept as the rows of
    ``A = −(η/N) [φ_in(x_i)]`` ``(block, fan_in)`` and ``B = [δ^l(x_i)]`` ``(block, N_l)`` (zero
    rows for samples to come), and the current weights are applied to vectors without being
    formed — the same numbers as the updated matrix, up to rounding. One matrix product folds
    them into ``W`` at the end of the block: the large matrix is read twice per sample and
    written once per block, instead of read three times and written once per sample.
    """

    __slots__ = ("W", "A", "B")

    def __init__(self, W, A, B):
        self.W, self.A, self.B = W, A, B

    def __rmatmul__(self, h):  # a^l = φ_in (W + Aᵀ B)
        return h @ self.W + (self.A @ h) @ self.B

    def __matmul__(self, d):  # equation (3): (W + Aᵀ B) δ
        return self.W @ d + (self.B @ d) @ self.A


def _sample_sgd_step(net, loss, eta_over_N, masks, theta, sample):
    """Algorithm 1, line 6, for one sample: ``w ← w − (η/N) ∂L/∂w(x_i)``, on vectors.

    ``theta = (w0, W, A, B)``: the biases and weights of :func:`bpjax.forward.split`, and for
    each layer whose updates are deferred the factors of :class:`_DeferredW` (else ``None``).
    The forward pass, the hand-written deltas and the updates are fused in one step.
    """
    w0, W, A, B = theta
    x, y, i, r = sample  # i: the sample's place in its block; r: its weight s_i N / Σs, or None
    weights = tuple(w if a is None else _DeferredW(w, a, b) for w, a, b in zip(W, A, B))
    tr = propagate_split(net, w0, weights, x)
    delta = loss_deltas(net, weights, tr, y, loss, r, bias_row=False)  # no 1/N: η/N below
    g0, gW = sample_weight_gradients(net, tr, delta)
    m0, mW = masks
    w0 = tuple(apply_update(w, -eta_over_N * g, m) for w, g, m in zip(w0, g0, m0))
    W, A, B = list(W), list(A), list(B)
    for l in range(1, net.depth + 1):
        if A[l - 1] is None:
            W[l - 1] = apply_update(W[l - 1], -eta_over_N * gW[l - 1], mW[l - 1])
        else:  # gW[l-1] = φ_in ⊗ δ^l, kept as its two factors
            phi_in = layer_inputs(net, tr.phi, l)
            A[l - 1] = jax.lax.dynamic_update_index_in_dim(A[l - 1], -eta_over_N * phi_in, i, 0)
            B[l - 1] = jax.lax.dynamic_update_index_in_dim(B[l - 1], delta[l], i, 0)
    return (w0, tuple(W), tuple(A), tuple(B)), None


def algorithm1_epoch(net, eta_over_N, masks, params, X, Y, loss=SQUARED, r=None):
    """One epoch of Algorithm 1 with plain SGD: every sample in order, one step each.

    ``r`` ``(N,)``: per-sample weights as ``r_i = s_i N / Σ s``, so that sample ``i`` steps by
    ``η s_i / Σ s`` (``η/N`` when None). Large layers defer their rank-1 updates over blocks of
    ``_BLOCK`` samples (see :class:`_DeferredW`); the ``N mod _BLOCK`` last samples, and small
    networks, step directly.
    """
    masks = masks if masks is not None else (None,) * net.depth
    m0 = tuple(None if m is None else m[0] for m in masks)
    mW = tuple(None if m is None else m[1:] for m in masks)
    step = partial(_sample_sgd_step, net, loss, eta_over_N, (m0, mW))
    w0, W = split(params)
    none = (None,) * net.depth
    deferred = tuple(m is None and w.shape[0] * w.shape[1] >= _DEFER_MIN for w, m in zip(W, mW))
    N = X.shape[0]
    blocks = N // _BLOCK if any(deferred) else 0
    if blocks:
        def block(theta, xyr):
            w0, W = theta
            xb, yb, rb = xyr
            A = tuple(jnp.zeros((_BLOCK, w.shape[0]), w.dtype) if d else None
                      for w, d in zip(W, deferred))
            B = tuple(jnp.zeros((_BLOCK, w.shape[1]), w.dtype) if d else None
                      for w, d in zip(W, deferred))
            (w0, W, A, B), _ = jax.lax.scan(step, (w0, W, A, B),
                                            (xb, yb, jnp.arange(_BLOCK), rb), unroll=2)
            W = tuple(w if a is None else w + a.T @ b for w, a, b in zip(W, A, B))
            return (w0, W), None

        n = blocks * _BLOCK
        Xb = X[:n].reshape(blocks, _BLOCK, X.shape[1])
        Yb = Y[:n].reshape(blocks, _BLOCK, Y.shape[1])
        Rb = None if r is None else r[:n].reshape(blocks, _BLOCK)
        (w0, W), _ = jax.lax.scan(block, (w0, W), (Xb, Yb, Rb))
        X, Y, r = X[n:], Y[n:], None if r is None else r[n:]
    if X.shape[0]:
        unroll = 1 if net.num_params <= TINY else 2
        zeros = jnp.zeros(X.shape[0], jnp.int32)
        (w0, W, _, _), _ = jax.lax.scan(step, (w0, W, none, none), (X, Y, zeros, r),
                                        unroll=unroll)
    return join(w0, W)


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
# * Copy insertion with region analysis drops the copies XLA otherwise makes of the carried
#   factors of _DeferredW in every step.
# * YNNPACK fusions cost ~0.1 ms to launch: 7x the whole loss (1) of a small network each epoch.
# * 512-bit vectors where the CPU has them: the matrix-vector products of a step (W1: -15%).
SEQUENTIAL_CPU = {
    "xla_disable_hlo_passes": "cpu-parallel-task-assigner",
    "xla_cpu_copy_insertion_use_region_analysis": True,
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_prefer_vector_width": 512,
}


def sequential(config, data) -> bool:
    """Whether the loop takes per-sample steps on a CPU (compile it with ``SEQUENTIAL_CPU``)."""
    return config.batch == 1 and all(d.platform == "cpu" for d in data.X.devices())


def _compiles_on_cpu(options: dict) -> str | None:
    """``None`` if XLA:CPU compiles a trivial function with ``options``, else its error."""
    x = jax.device_put(np.float32(0), jax.devices("cpu")[0])
    try:
        jit = jax.jit(lambda v: v + 1, compiler_options=options) if options else \
            jax.jit(lambda v: v + 1)
        jit.lower(x).compile()
    except Exception as e:  # whatever this jaxlib raises for an option it rejects
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


@functools.cache
def sequential_cpu_options() -> dict:
    """The options of :data:`SEQUENTIAL_CPU` that this jaxlib's CPU compiler accepts.

    XLA's options come and go between jaxlib releases, and an unknown one is an error at
    compile time. They are probed once per process, all together and, if that fails, one by
    one; the per-sample loop is then compiled with the accepted subset, with a one-time
    warning naming the others. The results are the same (the options only schedule the
    work), only slower.

    Returns:
      A dict of XLA option names to values, a subset of :data:`SEQUENTIAL_CPU`.
    """
    if _compiles_on_cpu(SEQUENTIAL_CPU) is None:
        return dict(SEQUENTIAL_CPU)
    errors = {k: _compiles_on_cpu({k: v}) for k, v in SEQUENTIAL_CPU.items()}
    accepted = {k: v for k, v in SEQUENTIAL_CPU.items() if errors[k] is None}
    rejected = {k: e for k, e in errors.items() if e is not None}
    warnings.warn(
        f"bpjax: this jaxlib ({jaxlib.__version__}) rejects the XLA:CPU option(s) "
        f"{sorted(rejected)} of bpjax.algorithm1.SEQUENTIAL_CPU "
        f"({next(iter(rejected.values()), '')}); the per-sample loop (batch_size=1 on a CPU) "
        f"is compiled without them: the same results, slower.", RuntimeWarning, stacklevel=2)
    return accepted


class SequentialJit:
    """``jax.jit(fun, **jit_kwargs)`` compiled with :func:`sequential_cpu_options`.

    The ``jax.jit`` object is made on first use, so importing bpjax probes nothing and starts
    no backend. Calls and attributes (``lower``, ...) go to it.
    """

    def __init__(self, fun, **jit_kwargs):
        self.fun, self.jit_kwargs = fun, jit_kwargs

    @functools.cached_property
    def jitted(self):
        """The ``jax.jit`` object, made with the accepted options on first use."""
        options = sequential_cpu_options()
        if not options:  # a jaxlib that takes none of them: no compiler_options at all
            return jax.jit(self.fun, **self.jit_kwargs)
        return jax.jit(self.fun, compiler_options=options, **self.jit_kwargs)

    def __call__(self, *args, **kwargs):
        return self.jitted(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("fun", "jit_kwargs"):
            raise AttributeError(name)
        return getattr(self.jitted, name)
