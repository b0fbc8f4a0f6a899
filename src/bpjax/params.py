"""The parameters θ = {w^l_jk}: one weight matrix per layer, bias in row 0.

**The one index offset of the library:** ``params[l-1]`` holds layer ``l``'s weights, so that

    params[l-1][j, k] == w^l_jk,    params[l-1].shape == (1 + fan_in, N_l).

Rows are the paper's ``j`` exactly: ``j = 0`` is the bias (the homogenised input
``φ^{l-1}_0 = 1``) and ``j ≥ 1`` are the inputs, in the order of ``Layer.inputs``. Columns are
the layer's neurons ``k``; in code they count from 0 as array indices do, while the paper
counts neurons from 1, so the paper's ``w^1_21`` (input 2 into neuron 1) is ``params[0][2, 0]``.
Where bpjax prints a weight for people to read (reports, paths, figures) it writes
``w^l_(j,k)`` in the paper's numbering.

``params`` is a tuple, a pytree: it goes through ``jax.jit``, ``jax.vmap``, optax and
``jax.tree.map`` as it is. Structural zeros (``bias=False``, absent connections of an
adjacency mask) are stored as 0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bpjax.data import check_finite
from bpjax.network import Network, check_network

__all__ = ["Params", "as_key", "check_params", "init"]

Params = tuple  # tuple[jax.Array, ...], params[l-1] == w^l


def _default_float():
    return jnp.asarray(0.0).dtype  # float64 under jax_enable_x64, else float32


def as_key(key, name: str = "key") -> jax.Array:
    """A typed PRNG key array from ``jax.random.key(seed)`` or a legacy ``jax.random.PRNGKey``.

    Both kinds are accepted wherever bpjax takes a key (``init``, ``fit(shuffle=)``), and give
    the same random numbers: a legacy key (a ``uint32`` array of shape ``(..., 2)``) is
    wrapped with :func:`jax.random.wrap_key_data`. Any shape passes (the caller checks it);
    works on tracers.

    Raises:
      TypeError: ``key`` is neither, naming ``name``.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return key
    raw = jax.random.key_data(jax.random.key(0)).shape  # (2,) for the default threefry
    if isinstance(key, (jax.Array, np.ndarray)) and dtype == np.uint32 and \
            tuple(key.shape[-len(raw):]) == raw:
        return jax.random.wrap_key_data(key)
    what = (f"{dtype} array of shape {tuple(key.shape)}" if dtype is not None
            else f"{type(key).__name__}: {key!r:.40}")
    hint = f"; e.g. jax.random.key({key})" if isinstance(key, int) and \
        not isinstance(key, bool) else ""
    raise TypeError(f"{name} must be a key from jax.random.key(seed) (or a legacy "
                    f"jax.random.PRNGKey(seed)), got {what}{hint}")


def init(
    net: Network,
    key: jax.Array,
    *,
    dtype=None,
    scale: float = 1.0,
) -> Params:
    """Random initial weights ``w^{l,(0)}_jk`` (Algorithm 1, line 2).

    Each connection weight of neuron ``(l, k)`` is drawn from ``N(0, σ²)``, with σ chosen by
    the neuron's activation (``Activation.init``):

    | activation                                             | σ²                     |
    | ------------------------------------------------------ | ---------------------- |
    | identity, square, logistic, tanh, softplus (Glorot)    | 2 / (fan_in + fan_out) |
    | relu (He)                                              | 2 / fan_in             |

    where ``fan_in`` counts the connections that exist into neuron ``(l, k)`` and ``fan_out``
    is ``N_l``. Biases ``w^l_0k`` start at 0, and so do structural zeros.

    Args:
      net: the network.
      key: one key, from ``jax.random.key(seed)`` (or a legacy ``jax.random.PRNGKey(seed)``,
        which gives the same weights). For many models, ``jax.vmap`` over split keys.
      dtype: a floating dtype; default float32, or float64 when ``jax_enable_x64`` is on.
      scale: a number ``> 0`` that multiplies every σ.

    Returns:
      ``params``, a tuple of ``L`` arrays, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
    """
    check_network(net, "init")
    key = as_key(key)
    if key.shape != ():
        raise ValueError(
            f"key must be one key, got {key.size} (shape {key.shape}): for many models, "
            f"jax.vmap(lambda k: bp.init(net, k))(keys)")
    try:
        dtype = _default_float() if dtype is None else jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"init dtype must be a floating dtype, got {dtype!r}") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init dtype must be floating, got {dtype}")
    if isinstance(scale, (bool, np.bool_)) or not isinstance(
            scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"init scale must be a number, got {type(scale).__name__}: {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"init scale must be a finite number > 0, got {scale!r}")
    sigma = []  # σ of each neuron's connections, from its activation and fan-in (numpy)
    for l in range(1, net.depth + 1):
        layer, mask = net.layer(l), net.structure(l)
        fan_in = np.maximum(mask[1:].sum(axis=0), 1)  # existing connections into each k
        he = np.array([a.init == "he" for a in layer.activations])
        var = np.where(he, 2.0 / fan_in, 2.0 / (fan_in + layer.size))
        sigma.append(scale * np.sqrt(var))
    return _draw(net, key, dtype, sigma)


# --- the draw: few compilations ---------------------------------------------------------------
#
# Layer l's weights are w = z_l σ, z_l = jax.random.normal(split(key, L)[l-1], (1 + fan_in, N_l)),
# biases and structural zeros set to 0. Drawn layer by layer, every shape compiles its own
# random-number kernel (threefry, then the normal's inverse error function): seconds for a
# deep network of distinct sizes. But threefry's counters are the flat indices of the array
# (jax_threefry_partitionable, JAX's default), so z_l is the first 1 + fan_in × N_l numbers of
# normal(key_l, (S,)) for any larger S: the layers are drawn together, as rows of one
# (L, S) array, by one kernel that compiles once for every network with the same L and S
# (a power of 2), then cut into layers on the host, exactly as drawn one by one.

_SPARE = 4  # a joint draw may take up to this many times the numbers the layers need


def _bucket(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()  # the power of 2 at or above n


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _normal_rows(key, L: int, rows: tuple, S: int, dtype) -> jax.Array:
    """``normal(split(key, L)[l], (S,), dtype)`` for each ``l`` in ``rows``: ``(len(rows), S)``."""
    keys = jax.random.split(key, L)[np.asarray(rows)]
    return jax.vmap(lambda k: jax.random.normal(k, (S,), dtype))(keys)


def _groups(net: Network, key) -> list[tuple[tuple, int]]:
    """The joint draws: ``(rows, S)``, each layer (a row, ``l - 1``) in one of them."""
    sizes = [r * c for r, c in net.shapes]
    L = net.depth
    prefix = jax.config.jax_threefry_partitionable and \
        str(jax.random.key_impl(key)) in ("threefry2x32", "PRNGImpl(threefry2x32)")
    if not prefix:  # a draw of another size gives other numbers: one exact draw a layer
        return [((l,), n) for l, n in enumerate(sizes)]
    S = _bucket(max(sizes))
    if L * S <= _SPARE * sum(sizes) + 2**16:
        return [(tuple(range(L)), S)]
    by_size: dict[int, list] = {}  # sizes far apart: the layers of each power of 2 together
    for l, n in enumerate(sizes):
        by_size.setdefault(_bucket(n), []).append(l)
    return [(tuple(rows), S) for S, rows in by_size.items()]


def _draw(net: Network, key, dtype, sigma: list) -> Params:
    """``w^l = z_l σ^l``, 0 at the biases and structural zeros (see above)."""
    z = [None] * net.depth
    traced = isinstance(key, jax.core.Tracer)  # under jax.vmap or jax.jit: cut in the trace
    for rows, S in _groups(net, key):
        drawn = _normal_rows(key, net.depth, rows, S, dtype)
        drawn = drawn if traced else np.asarray(drawn)  # one transfer a draw
        for i, l in enumerate(rows):
            z[l] = drawn[i]
    xp = jnp if traced else np
    params = []
    for l, (shape, z_l, sigma_l) in enumerate(zip(net.shapes, z, sigma), start=1):
        live = net.structure(l).copy()
        live[0] = False  # the biases start at 0
        w = xp.where(live, z_l[:shape[0] * shape[1]].reshape(shape) * sigma_l.astype(z_l.dtype), 0)
        params.append(w if traced else jax.device_put(w))  # (jnp.asarray compiles per shape)
    return tuple(params)


def check_layers(
    net: Network,
    tree,
    *,
    name: str = "params",
    what: str = "arrays (params[l-1] == w^l)",
    leading: tuple[int, ...] = (),
    expected: str = "(1 + fan_in, N_l) =",
    boolean: bool = False,
) -> tuple:
    """Checks a tuple of one array per layer shaped like the weights; returns it as a tuple.

    The one check behind ``params``, ``frozen`` masks and a sweep's stacked ``params``:
    ``tree[l-1]`` must have shape ``(*leading, 1 + fan_in, N_l)`` and be floating (or boolean).

    Args:
      net: the network.
      tree: the tuple to check.
      name: its name in error messages.
      what: what it must be, after "a tuple of L ...", in error messages.
      leading: leading axes before each layer's ``(1 + fan_in, N_l)``.
      expected: how the expected shape is introduced; ``{i}`` stands for ``l - 1``.
      boolean: boolean arrays instead of floating ones.

    Raises:
      TypeError: not a sequence of arrays, or the wrong dtype.
      ValueError: the wrong number of layers, or a layer of the wrong shape.
    """
    if isinstance(tree, (jax.Array, np.ndarray, str, bytes)) or not isinstance(tree, Sequence):
        raise TypeError(
            f"{name} must be a tuple of {net.depth} {what}, got {type(tree).__name__}")
    if len(tree) != net.depth:
        raise ValueError(
            f"{name} has {len(tree)} layers, expected L = {net.depth} for this network")
    for l, (w, shape) in enumerate(zip(tree, net.shapes), start=1):
        here = f"{name}[{l - 1}] (layer {l})"
        w_shape = getattr(w, "shape", None)
        if w_shape is None:
            raise TypeError(f"{here} must be an array, got {type(w).__name__}")
        if tuple(w_shape) != (*leading, *shape):
            raise ValueError(
                f"{here} has shape {tuple(w_shape)}, expected "
                f"{expected.format(i=l - 1)} {(*leading, *shape)}")
        if boolean and w.dtype != np.bool_:
            raise TypeError(f"{here} must be boolean, got dtype {w.dtype}")
        if not boolean and not jnp.issubdtype(w.dtype, jnp.floating):
            raise TypeError(f"{here} must be floating, got dtype {w.dtype}")
    return tuple(tree)


def check_params(net: Network, params: Sequence, *, finite: bool = False) -> Params:
    """Checks that ``params`` fits ``net`` and returns it as a tuple.

    By default only shapes and dtypes are checked, which costs no transfer from the device
    (the eager functions check this much on every call). ``finite=True`` also looks at the
    values, as :func:`bpjax.fit` does: one host sync, so for your own checks, e.g. before
    :func:`bpjax.forward`, which lets NaN and Inf through (see :mod:`bpjax.data`).

    Raises:
      TypeError: ``params`` is not a sequence of floating arrays.
      ValueError: wrong number of layers, or a layer of the wrong shape; with ``finite``,
        NaN or Inf in a layer (naming it and the first such entry).
    """
    check_network(net, "check_params")
    if not isinstance(finite, (bool, np.bool_)):
        raise TypeError(f"finite must be True or False, got {finite!r}")
    params = check_layers(net, params)
    if finite:
        check_finite(**{f"params[{l - 1}] (layer {l})": w for l, w in enumerate(params, 1)})
    return params


def structural(net: Network, params: Params) -> Params:
    """``params`` with structural zeros forced to 0 (``jnp.where``, so NaN there is ignored too).

    Dense layers are passed through untouched: no work for the common case.
    """
    return tuple(
        w if net.is_dense(l) else jnp.where(net.structure(l), w, jnp.zeros((), w.dtype))
        for l, w in enumerate(params, start=1)
    )
