"""How bpjax's computations are compiled: ``jax.jit`` with the XLA:CPU options that pay.

JAX compiles every jitted function with XLA's defaults, which are tuned for large models. Two
kinds of computation in bpjax are not large, and compile better with a few XLA:CPU options:

* the per-sample loop of Algorithm 1 (``batch_size=1``): :data:`bpjax.algorithm1.SEQUENTIAL_CPU`;
* everything batched — the minibatch loops of :func:`bpjax.fit` and :func:`bpjax.sweep`, and
  the eager functions (:func:`bpjax.forward`, :func:`bpjax.loss`, :func:`bpjax.backprop`, …):
  :data:`BATCHED_CPU`.

The options are XLA's, not part of JAX's API: :func:`cpu_options` keeps those the installed
jaxlib accepts (probed once), and :class:`CpuJit` compiles with them, on a CPU only. They
choose the kernels, not the maths: the results are the same up to rounding (a sum may be
added in another order).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jaxlib
import numpy as np

__all__ = ["BATCHED_CPU", "CpuJit", "batched_jit", "cpu_options"]

# Measured on 2 cores (benchmarks/minibatch_grid.py, benchmarks/overhead.py):
# * XLA:CPU hands matrix products to YNNPACK, and by default fuses into the same YNNPACK call
#   the elementwise operations and reductions around them. Such a fusion costs tens of µs to
#   launch: loss (1) of a 2-2-1 network on 2048 samples took 114 µs instead of 22, a minibatch
#   step of 8-32-32-1 on 256 samples 78 µs instead of 48. Products alone ("individual dots")
#   keep YNNPACK's kernels, faster than XLA's own for large layers (784-256-256-10: the same).
BATCHED_CPU = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def _compile_error(options: dict) -> str | None:
    """``None`` if XLA:CPU compiles a trivial function with ``options``, else its error."""
    x = jax.device_put(np.float32(0), jax.devices("cpu")[0])
    try:
        jax.jit(lambda v: v + 1, compiler_options=options).lower(x).compile()
    except Exception as e:  # whatever this jaxlib raises for an option it rejects
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


@functools.cache
def _accepted(items: tuple) -> tuple:
    options = dict(items)
    if not options or _compile_error(options) is None:
        return items
    errors = {k: _compile_error({k: v}) for k, v in items}
    rejected = {k: e for k, e in errors.items() if e is not None}
    warnings.warn(
        f"bpjax: this jaxlib ({jaxlib.__version__}) rejects the XLA:CPU option(s) "
        f"{sorted(rejected)} ({next(iter(rejected.values()), '')}); bpjax compiles without "
        f"them: the same results, slower.", RuntimeWarning, stacklevel=3)
    return tuple((k, v) for k, v in items if errors[k] is None)


def cpu_options(options: dict) -> dict:
    """The options of ``options`` that this jaxlib's CPU compiler accepts.

    XLA's options come and go between jaxlib releases, and an unknown one (or an unknown
    value) is an error at compile time. They are probed once per process, all together and,
    if that fails, one by one, with a one-time warning naming those left out.
    """
    return dict(_accepted(tuple(sorted(options.items()))))


class CpuJit:
    """``jax.jit(fun, **jit_kwargs)``, compiled with :func:`cpu_options` of ``options`` when
    JAX's default backend is a CPU, and without them elsewhere.

    The ``jax.jit`` object is made on first use, so importing bpjax probes nothing and starts
    no backend. Calls and attributes (``lower``, ``trace``, ...) go to it. Called inside the
    trace of another function (``jax.jit(lambda p: bp.backprop(net, p, X, Y))``), where JAX
    takes no compiler options, it is compiled as part of that function, without them.
    """

    def __init__(self, fun, options: dict, **jit_kwargs):
        self.fun, self.options, self.jit_kwargs = fun, options, jit_kwargs
        functools.update_wrapper(self, fun)

    @functools.cached_property
    def jitted(self):
        """The ``jax.jit`` object, made with the accepted options on first use."""
        options = cpu_options(self.options) if jax.default_backend() == "cpu" else {}
        if not options:
            return self.plain
        return jax.jit(self.fun, compiler_options=options, **self.jit_kwargs)

    @functools.cached_property
    def plain(self):
        """The ``jax.jit`` object without options, for calls inside another function's trace."""
        return jax.jit(self.fun, **self.jit_kwargs)

    def __call__(self, *args, **kwargs):
        try:
            return self.jitted(*args, **kwargs)
        except ValueError as e:  # JAX takes compiler options on top-level functions only
            if "compiler_options" not in str(e) or self.jitted is self.plain:
                raise
        # called while another function is traced (jax.jit, jax.grad, ...): compiled as part
        # of it, with its options
        return self.plain(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("fun", "options", "jit_kwargs", "plain"):
            raise AttributeError(name)
        return getattr(self.jitted, name)


def batched_jit(fun=None, **jit_kwargs):
    """:class:`CpuJit` with :data:`BATCHED_CPU`; usable as a decorator, like ``jax.jit``."""
    if fun is None:
        return functools.partial(batched_jit, **jit_kwargs)
    return CpuJit(fun, BATCHED_CPU, **jit_kwargs)
