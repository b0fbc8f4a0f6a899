"""Saving and loading a network, its weights θ and its optimizer state, in one file.

The file is a NumPy ``.npz`` archive — arrays and JSON, never pickle:

| entry           | holds                                                                   |
| --------------- | ----------------------------------------------------------------------- |
| ``bpjax.json``  | UTF-8 JSON: format and version, the network (layers, activations by    |
|                 | name, inputs, bias, adjacency), the epoch count, the optimizer state's  |
|                 | tree structure, every array's dtype and shape, the user's metadata      |
| ``params/l-1``  | ``w^l``, shape ``(1 + fan_in, N_l)``, for ``l = 1..L``                  |
| ``opt_state/i`` | the optimizer state's leaves, in ``jax.tree`` order                     |

Writes are atomic: the archive goes to a temporary file in the same directory, which then
replaces the target, so a crash never leaves a half-written checkpoint under the real name.
Reads check everything before returning: a missing, truncated or foreign file, or one that
does not match the network or optimizer it is loaded for, raises an error that says so.

Activations are saved by name: a network that uses a user's activation can be loaded once the
activation is registered again (:func:`bpjax.register_activation`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax import activations as _activations
from bpjax.network import Layer, Network
from bpjax.params import Params, check_params

__all__ = ["Checkpoint", "atomic_file", "load", "save"]

FORMAT = "bpjax-checkpoint"
VERSION = 1
_META = "bpjax.json"


class Checkpoint(NamedTuple):
    """What :func:`load` returns; :func:`bpjax.fit` resumes from it like from a result.

    Attributes:
      net: the network.
      params: its weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``.
      opt_state: the optimizer state, or ``None`` if none was saved.
      epoch: the number of epochs trained so far.
      metadata: the user's JSON metadata (a dict).
    """

    net: Network
    params: Params
    opt_state: Any
    epoch: int
    metadata: dict


# --- the network as JSON ------------------------------------------------------------------------


def _activation_name(act, resolved, l) -> str:
    """The name under which the file stores ``act``; it must load back as ``resolved``."""
    name = act if isinstance(act, str) else act.name
    registered = _activations.get_activation(name) if name in \
        _activations.available_activations() else None
    if registered != resolved:
        why = ("" if registered is None else
               " now (it was registered again after this network was built)")
        raise ValueError(
            f"layer {l} uses the activation {name!r}, which is not registered under that name"
            f"{why}: register it with bpjax.register_activation so that the file can name it, "
            f"and build the network again")
    return name


def _network_to_json(net: Network) -> dict:
    layers = []
    for l, layer in enumerate(net.layers, start=1):
        act = layer.activation
        act = (_activation_name(act, layer.activations[0], l)
               if isinstance(act, (str, _activations.Activation))
               else [_activation_name(a, f, l) for a, f in zip(act, layer.activations)])
        layers.append({
            "size": layer.size,
            "activation": act,
            "inputs": None if layer.inputs is None else list(layer.inputs),
            "bias": bool(layer.bias),
            "adjacency": None if layer.adjacency is None else [list(r) for r in layer.adjacency],
        })
    return {"inputs": net.inputs, "layers": layers}


def _network_from_json(spec: dict) -> Network:
    layers = []
    for layer in spec["layers"]:
        act = layer["activation"]
        layers.append(Layer(
            layer["size"],
            act if isinstance(act, str) else tuple(act),
            inputs=None if layer["inputs"] is None else tuple(layer["inputs"]),
            bias=layer["bias"],
            adjacency=layer["adjacency"],
        ))
    return Network(spec["inputs"], layers)


# --- arrays -------------------------------------------------------------------------------------


def _to_numpy(v, what) -> tuple[np.ndarray, dict]:
    """An array as numpy plus its ``{dtype, shape}`` (non-numpy dtypes stored as raw bits)."""
    if isinstance(v, jax.Array) and jnp.issubdtype(v.dtype, jax.dtypes.prng_key):
        raise TypeError(f"{what} is a PRNG key array, which a checkpoint cannot hold")
    a = np.asarray(v)
    if a.dtype == object:
        raise TypeError(f"{what} must be a numeric array, got {type(v).__name__}")
    info = {"dtype": jnp.dtype(a.dtype).name, "shape": list(a.shape)}
    if a.dtype.kind == "V":  # bfloat16 and friends: keep the bits
        a = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    return a, info


def _from_numpy(a: np.ndarray, info: dict, what: str, path) -> jax.Array:
    dtype = jnp.dtype(info["dtype"])
    if a.dtype != dtype:
        a = a.view(dtype)
    if list(a.shape) != info["shape"]:
        raise ValueError(
            f"{path}: {what} has shape {a.shape} but the file's metadata says {info['shape']}: "
            f"the file is corrupt")
    return jnp.asarray(a)


# --- save and load ------------------------------------------------------------------------------


def save(
    path,
    net: Network,
    params,
    opt_state=None,
    *,
    epoch: int = 0,
    metadata: dict | None = None,
) -> Path:
    """Saves a network, its weights and optionally its optimizer state to one ``.npz`` file.

    Args:
      path: the file to write (replaced atomically if it exists).
      net: the network.
      params: its weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``; or a
        :class:`bpjax.FitResult`, whose weights, optimizer state and epoch count are saved.
      opt_state: the optimizer state (any pytree of arrays), or ``None``.
      epoch: the number of epochs trained so far.
      metadata: a JSON-serialisable dict of your own, returned by :func:`load`.

    Returns:
      The path written.
    """
    if not isinstance(net, Network):
        raise TypeError(f"save expects a bpjax.Network, got {type(net).__name__}")
    if hasattr(params, "opt_state") and hasattr(params, "epoch"):  # a FitResult
        if opt_state is not None:
            raise ValueError("pass either a result or opt_state, not both")
        params, opt_state, epoch = params.params, params.opt_state, params.epoch
    params = check_params(net, params)
    if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)) \
            or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")

    arrays, info = {}, {"params": [], "opt_state": None}
    for l, w in enumerate(params, start=1):
        a, i = _to_numpy(w, f"params[{l - 1}] (layer {l})")
        arrays[f"params/{l - 1}"] = a
        info["params"].append(i)
    if opt_state is not None:
        leaves, treedef = jax.tree.flatten(opt_state)
        info["opt_state"] = {"structure": str(treedef), "leaves": []}
        for n, v in enumerate(leaves):
            a, i = _to_numpy(v, f"opt_state leaf {n}")
            arrays[f"opt_state/{n}"] = a
            info["opt_state"]["leaves"].append(i)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "network": _network_to_json(net),
        "epoch": int(epoch),
        "arrays": info,
        "metadata": metadata or {},
    }
    try:
        blob = json.dumps(meta).encode()
    except TypeError as e:
        raise TypeError(f"metadata must be JSON-serialisable: {e}") from e
    arrays[_META] = np.frombuffer(blob, dtype=np.uint8)

    path = Path(path)
    with atomic_file(path) as f:
        np.savez(f, **arrays)
    return path


@contextlib.contextmanager
def atomic_file(path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once it is completely written.

    The data go to a temporary file in the same directory, flushed to disk, then renamed over
    ``path``; on any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> tuple[dict, dict]:
    """The metadata and the arrays of a checkpoint file, or a clear error."""
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable bpjax checkpoint (truncated or corrupt?): {e}") from e
    if _META not in arrays:
        raise ValueError(
            f"{path} is not a bpjax checkpoint: it has no {_META} entry "
            f"(entries: {', '.join(list(arrays)[:5]) or 'none'})")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the {_META} entry is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bpjax checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{path} is a bpjax checkpoint of version {meta.get('version')!r}; this bpjax "
            f"reads version {VERSION}")
    return meta, arrays


def load(path, *, net: Network | None = None,
         optimizer: optax.GradientTransformation | None = None) -> Checkpoint:
    """Loads what :func:`save` wrote.

    Args:
      path: the file.
      net: optional: the network you expect; a file holding another one is an error.
      optimizer: the optimizer whose state the file holds, to rebuild its structure
        (``None``: plain SGD, whose state is ``optax.EmptyState()``). Ignored if the file
        holds no optimizer state.

    Returns:
      A :class:`Checkpoint` ``(net, params, opt_state, epoch, metadata)``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file is truncated, corrupt or not a bpjax checkpoint; or it holds
        another network than ``net``, or a state that does not fit ``optimizer``.
    """
    path = Path(path)
    meta, arrays = _read(path)
    try:
        saved_net = _network_from_json(meta["network"])
        params_info = meta["arrays"]["params"]
        state_info = meta["arrays"]["opt_state"]
        epoch = int(meta["epoch"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: the checkpoint's metadata is incomplete: {e!r}") from e
    if net is not None and net != saved_net:
        raise ValueError(f"{path} holds another network:\n{saved_net!r}\nexpected\n{net!r}")

    def array(name, info, what):
        if name not in arrays:
            raise ValueError(f"{path}: the entry {name} ({what}) is missing: the file is corrupt")
        return _from_numpy(arrays[name], info, what, path)

    params = tuple(array(f"params/{l - 1}", info, f"params[{l - 1}] (layer {l})")
                   for l, info in enumerate(params_info, start=1))
    try:
        params = check_params(saved_net, params)
    except ValueError as e:
        raise ValueError(f"{path}: the weights do not fit the saved network: {e}") from e

    opt_state = None
    if state_info is not None:
        init = optax.EmptyState if optimizer is None else partial(optimizer.init, params)
        template = jax.eval_shape(init)  # plain SGD (optimizer=None) has an empty state
        leaves_t, treedef = jax.tree.flatten(template)
        if str(treedef) != state_info["structure"]:
            raise ValueError(
                f"{path} holds an optimizer state of structure {state_info['structure']}, "
                f"but the optimizer given makes {treedef}: pass the optimizer that made it, "
                f"load(path, optimizer=...)")
        leaves = [array(f"opt_state/{n}", info, f"opt_state leaf {n}")
                  for n, info in enumerate(state_info["leaves"])]
        for n, (v, t) in enumerate(zip(leaves, leaves_t)):
            if v.shape != t.shape or v.dtype != t.dtype:
                raise ValueError(
                    f"{path}: opt_state leaf {n} is {v.dtype}{list(v.shape)}, but the optimizer "
                    f"given makes {t.dtype}{list(t.shape)}")
        opt_state = jax.tree.unflatten(treedef, leaves)
    return Checkpoint(saved_net, params, opt_state, epoch, meta.get("metadata", {}))
