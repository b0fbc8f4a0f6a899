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
    keys = jax.random.split(key, net.depth)
    params = []
    for l in range(1, net.depth + 1):
        layer, mask = net.layer(l), net.structure(l)
        fan_in = np.maximum(mask[1:].sum(axis=0), 1)  # existing connections into each k
        he = np.array([a.init == "he" for a in layer.activations])
        var = np.where(he, 2.0 / fan_in, 2.0 / (fan_in + layer.size))
        sigma = scale * np.sqrt(var)
        w = jax.random.normal(keys[l - 1], mask.shape, dtype) * sigma.astype(dtype)
        w = w.at[0].set(0)
        params.append(jnp.where(mask, w, 0).astype(dtype))
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
