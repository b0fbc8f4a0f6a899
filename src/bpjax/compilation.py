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

__all__ = ["BATCHED_CPU", "CpuJit", "batched_jit", "compile_error", "cpu_options"]

# Measured on 2 cores (benchmarks/minibatch_grid.py, benchmarks/overhead.py):
# * XLA:CPU hands matrix products to YNNPACK, and by default fuses into the same YNNPACK call
#   the elementwise operations and reductions around them. Such a fusion costs tens of µs to
#   launch: loss (1) of a 2-2-1 network on 2048 samples took 114 µs instead of 22, a minibatch
#   step of 8-32-32-1 on 256 samples 78 µs instead of 48. Products alone ("individual dots")
#   keep YNNPACK's kernels, faster than XLA's own for large layers (784-256-256-10: the same).
BATCHED_CPU = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compile_error(options: dict) -> str | None:
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
def _accepted(items: tuple, what: str) -> tuple:
    if compile_error(dict(items)) is None:
        return items
    errors = {k: compile_error({k: v}) for k, v in items}
    rejected = {k: e for k, e in errors.items() if e is not None}
    warnings.warn(
        f"bpjax: this jaxlib ({jaxlib.__version__}) rejects the XLA:CPU option(s) "
        f"{sorted(rejected)} ({next(iter(rejected.values()), '')}); {what} is compiled "
        f"without them: the same results, slower.", RuntimeWarning, stacklevel=4)
    return tuple((k, v) for k, v in items if errors[k] is None)


def cpu_options(options: dict, what: str = "bpjax") -> dict:
    """The options of ``options`` that this jaxlib's CPU compiler accepts.

    XLA's options come and go between jaxlib releases, and an unknown one (or an unknown
    value) is an error at compile time. They are probed once per process and set of options,
    all together and, if that fails, one by one, with a one-time warning naming those left out
    and ``what`` is compiled without them.
    """
    return dict(_accepted(tuple(sorted(options.items())), what))


class CpuJit:
    """``jax.jit(fun, **jit_kwargs)``, compiled with :func:`cpu_options` of ``options`` when
    JAX's default backend is a CPU, and without them elsewhere.

    ``per_network``, a function of the network (``fun``'s first argument, or its ``net=``),
    gives option values that depend on it (:func:`bpjax.algorithm1.loop_options`); they
    replace the values of accepted options, and each distinct set gets its own ``jax.jit``
    object (``jits``, keyed by the replaced values).

    The ``jax.jit`` objects are made on first use, so importing bpjax probes nothing and
    starts no backend. Calls, ``lower`` and ``trace`` go to the network's one; other
    attributes to the one with ``options`` as given. Called inside the trace of another function
    (``jax.jit(lambda p: bp.backprop(net, p, X, Y))``), where JAX takes no compiler options,
    it is compiled as part of that function, without them.
    """

    def __init__(self, fun, options: dict, *, what: str = "bpjax", per_network=None,
                 **jit_kwargs):
        self.fun, self.options, self.what = fun, options, what
        self.per_network, self.jit_kwargs = per_network, jit_kwargs
        self.jits: dict = {}
        self._by_network: dict = {}
        functools.update_wrapper(self, fun)

    def jit(self, replaced: tuple = ()):
        """The ``jax.jit`` object with the accepted options, ``replaced`` (items) overriding
        their values; made once."""
        jitted = self.jits.get(replaced)
        if jitted is None:
            options = cpu_options(self.options, self.what) \
                if jax.default_backend() == "cpu" else {}
            options.update((k, v) for k, v in replaced if k in options)
            jitted = self.jits[replaced] = jax.jit(
                self.fun, compiler_options=options, **self.jit_kwargs) if options else self.plain
        return jitted

    @functools.cached_property
    def jitted(self):
        """The ``jax.jit`` object with the accepted options as given."""
        return self.jit()

    @functools.cached_property
    def plain(self):
        """The ``jax.jit`` object without options, for calls inside another function's trace."""
        return jax.jit(self.fun, **self.jit_kwargs)

    def _for(self, net):
        jitted = self._by_network.get(net)
        if jitted is None:
            jitted = self._by_network[net] = self.jit(tuple(sorted(self.per_network(net).items())))
        return jitted

    def _pick(self, args, kwargs):
        """The ``jax.jit`` object a call with these arguments goes to."""
        return self.jitted if self.per_network is None else \
            self._for(args[0] if args else kwargs["net"])

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` of the object these arguments' call goes to (the per-network
        options included), so that what is inspected is what runs."""
        return self._pick(args, kwargs).lower(*args, **kwargs)

    def trace(self, *args, **kwargs):
        """``jax.jit(...).trace``, like :meth:`lower`."""
        return self._pick(args, kwargs).trace(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        jitted = self._pick(args, kwargs)
        try:
            return jitted(*args, **kwargs)
        except ValueError as e:  # JAX takes compiler options on top-level functions only
            if "compiler_options" not in str(e) or jitted is self.plain:
                raise
        # called while another function is traced (jax.jit, jax.grad, ...): compiled as part
        # of it, with its options
        return self.plain(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("fun", "options", "what", "per_network",
                                             "jit_kwargs", "jits", "_by_network", "plain"):
            raise AttributeError(name)
        return getattr(self.jitted, name)


def batched_jit(fun=None, **jit_kwargs):
    """:class:`CpuJit` with :data:`BATCHED_CPU`; usable as a decorator, like ``jax.jit``."""
    if fun is None:
        return functools.partial(batched_jit, **jit_kwargs)
    return CpuJit(fun, BATCHED_CPU, what="a batched computation", **jit_kwargs)
