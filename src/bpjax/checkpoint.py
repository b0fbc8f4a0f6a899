"""Saving and loading a network, its weights θ and its optimizer state, in one file.

The file is a NumPy ``.npz`` archive — arrays and JSON, never pickle:

| entry           | holds                                                                   |
| --------------- | ----------------------------------------------------------------------- |
| ``bpjax.json``  | UTF-8 JSON: format and version, the network (layers, activations by    |
|                 | name, inputs, bias, adjacency), the epoch count, the number of models   |
|                 | of a sweep, the optimizer state's tree structure, every array's dtype   |
|                 | and shape, the name of the loss trained on if given, the user's metadata |
| ``params/l-1``  | ``w^l``, shape ``(1 + fan_in, N_l)`` (``(M, 1 + fan_in, N_l)`` for a    |
|                 | sweep of ``M`` models), for ``l = 1..L``                                |
| ``opt_state/i`` | the optimizer state's leaves, in ``jax.tree`` order                     |

**A file that save writes loads.** :func:`save` checks everything before it writes: the
weights fit the network, every activation is registered under the name the file will hold,
every leaf of the optimizer state is an array of numbers or booleans (or a typed PRNG key
array, stored as its key data), the metadata is JSON with ``str`` keys. Strings, ``None``,
objects and other leaves are refused with an error that names the leaf. Then it reads the
file it wrote back, as :func:`load` would, before the file takes the target's name.

**The optimizer state's structure.** A state made of plain containers (``dict`` with ``str``
or ``int`` keys, ``list``, ``tuple``) is described in the file and loads without an
optimizer, and so do bpjax's own states (:class:`bpjax.LMState`, the state of a
:func:`bpjax.levenberg_marquardt` result), written by their name in ``bpjax``. Optax's states
are NamedTuples of other packages, which a file without pickle cannot rebuild:
``load(path, optimizer=...)`` rebuilds them from ``optimizer.init``, checking that the file's
structure, shapes and dtypes are what it makes (plain SGD, ``optax.EmptyState()``, needs no
optimizer).

**Writes are atomic.** The archive goes to a temporary file in the target's directory, which
then replaces the target, so a crash never leaves a half-written checkpoint under the real
name, and an error leaves an existing file as it was. Replacing a file keeps its permission
bits (a new file gets the usual ``0o666`` less the umask); the owner is the writer's. A
symbolic link is written *through*: its target is replaced and the link stays, pointing at
the new checkpoint (a dangling link creates its target).

**Reads check everything before returning**: a missing, truncated or foreign file (``.npy``,
random bytes, an archive of other arrays, hand-edited metadata), or one that does not match
the network or optimizer it is loaded for, raises an error that names the file and says
what is wrong.

Activations are saved by name: a network that uses a user's activation can be loaded once the
activation is registered again (:func:`bpjax.register_activation`).

**The loss.** ``save(..., loss=...)`` records the name of the loss the weights were trained on
(a :class:`bpjax.FitResult` does not carry it); :func:`load` gives it back as
``Checkpoint.loss``, and :func:`bpjax.fit` or :func:`bpjax.sweep` resuming from the checkpoint
train on it when given no ``loss=`` (another ``loss=`` is used, with a warning). Without it
(``None``, and in files of earlier bpjax) resuming trains on the loss given, ``"squared"`` by
default. A user's loss is saved by name: register it again before resuming.

Arrays come back as JAX arrays, of the dtype saved — subject to JAX's own rule that 64-bit
arrays need ``jax_enable_x64`` (without it a float64 file loads as float32, as any float64
array would).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax import activations as _activations
from bpjax.losses import get_loss
from bpjax.minibatch import as_transformation, state_dtype
from bpjax.network import Layer, Network, check_network
from bpjax.params import Params, check_layers, check_params

__all__ = ["Checkpoint", "atomic_file", "load", "save"]

FORMAT = "bpjax-checkpoint"
VERSION = 1
_META = "bpjax.json"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (npz), or an empty one
_NPY_MAGIC = b"\x93NUMPY"


class Checkpoint(NamedTuple):
    """What :func:`load` returns; :func:`bpjax.fit` resumes from it like from a result.

    Attributes:
      net: the network.
      params: its weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``; with a leading
        model axis ``(M, 1 + fan_in, N_l)`` for a sweep's checkpoint.
      opt_state: the optimizer state, or ``None`` if none was saved (a sweep's has a leading
        model axis on every leaf).
      epoch: the number of epochs trained so far: an int, or for a sweep an int array ``(M,)``.
      metadata: the user's JSON metadata (a dict).
      models: ``M`` for a sweep's checkpoint (which :func:`bpjax.sweep` resumes from), ``None``
        for one model's.
      loss: the name of the loss the weights were trained on, if it was saved
        (``save(..., loss=...)``): what :func:`bpjax.fit` resumes with by default.
    """

    net: Network
    params: Params
    opt_state: Any
    epoch: Any
    metadata: dict
    models: int | None = None
    loss: str | None = None


class _Invalid(ValueError):
    """Metadata that does not have the form save writes (the caller adds the file's name)."""


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


def _network_from_json(spec) -> Network:
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise _Invalid("'network' must be an object with a list of 'layers'")
    layers = []
    for l, layer in enumerate(spec["layers"], start=1):
        keys = {"size", "activation", "inputs", "bias", "adjacency"}
        if not isinstance(layer, dict) or set(layer) != keys:
            raise _Invalid(f"layer {l} of 'network' must be an object with keys {sorted(keys)}")
        act = layer["activation"]
        if not (isinstance(act, str) or (isinstance(act, list)
                                         and all(isinstance(a, str) for a in act))):
            raise _Invalid(f"layer {l}'s activation must be a name or a list of names, "
                           f"got {act!r}")
        inputs = layer["inputs"]
        if inputs is not None and not isinstance(inputs, list):
            raise _Invalid(f"layer {l}'s inputs must be null or a list, got {inputs!r}")
        try:
            layers.append(Layer(
                layer["size"],
                act if isinstance(act, str) else tuple(act),
                inputs=None if inputs is None else tuple(inputs),
                bias=layer["bias"],
                adjacency=layer["adjacency"],
            ))
        except (TypeError, ValueError) as e:
            raise _Invalid(f"layer {l} cannot be built: {e}") from None
    try:
        return Network(spec.get("inputs"), layers)
    except (TypeError, ValueError) as e:
        raise _Invalid(f"the network cannot be built: {e}") from None


# --- arrays -------------------------------------------------------------------------------------


def _is_key(v) -> bool:
    return isinstance(v, jax.Array) and jnp.issubdtype(v.dtype, jax.dtypes.prng_key)


def _to_numpy(v, what) -> tuple[np.ndarray, dict]:
    """An array as numpy plus its ``{dtype, shape}``: numbers and booleans as they are, other
    numeric dtypes (bfloat16, float8, int4) as their raw bits, typed PRNG keys as key data."""
    if _is_key(v):
        data = np.asarray(jax.random.key_data(v))
        return data, {"dtype": str(v.dtype), "shape": list(v.shape),
                      "impl": str(jax.random.key_impl(v))}
    if v is None:
        raise TypeError(f"{what} is None: a checkpoint holds arrays only (drop the entry, or "
                        f"store an array in its place)")
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{what} is a {type(v).__name__} ({v!r:.40}): a checkpoint holds arrays "
                        f"of numbers only (put text in metadata=)")
    if not isinstance(v, (jax.Array, np.ndarray, np.generic, bool, int, float, complex)):
        raise TypeError(f"{what} is a {type(v).__name__}, not an array: a checkpoint holds "
                        f"arrays of numbers or booleans only")
    a = np.asarray(v)
    info = {"dtype": a.dtype.name, "shape": list(a.shape)}
    if a.dtype.kind in "biufc":
        return a, info
    try:
        known = a.dtype.kind == "V" and a.dtype.names is None and \
            jnp.dtype(a.dtype.name) == a.dtype
    except TypeError:
        known = False
    if not known:
        raise TypeError(f"{what} has dtype {a.dtype}: a checkpoint holds arrays of numbers or "
                        f"booleans only")
    return a.view(np.dtype(f"u{a.dtype.itemsize}")), info  # bfloat16 and friends: the bits


def _check_info(info, what) -> tuple[np.dtype, tuple, str | None]:
    """The dtype, shape and PRNG implementation that the metadata gives an array."""
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not (
            isinstance(info.get("shape"), list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in info["shape"])):
        raise _Invalid(f"{what} must be described by {{'dtype': name, 'shape': [sizes]}}, got "
                       f"{info!r:.120}")
    impl = info.get("impl")
    if impl is not None:
        if not isinstance(impl, str) or not info["dtype"].startswith("key<"):
            raise _Invalid(f"{what} has a bad PRNG implementation {impl!r}")
        return np.dtype(np.uint32), tuple(info["shape"]), impl
    try:
        dtype = jnp.dtype(info["dtype"])
    except TypeError:
        raise _Invalid(f"{what} has dtype {info['dtype']!r}, which is not a dtype") from None
    return dtype, tuple(info["shape"]), None


def _from_numpy(a: np.ndarray, info: dict, what: str):
    """The array that ``_to_numpy`` stored: numpy, of the saved dtype (a typed key: JAX)."""
    dtype, shape, impl = _check_info(info, what)
    if impl is not None:
        if a.dtype.kind != "u" or a.shape[:len(shape)] != shape:
            raise _Invalid(f"{what} holds {a.dtype}{list(a.shape)}, not the key data of "
                           f"{info['dtype']}{list(shape)}")
        try:
            return jax.random.wrap_key_data(jnp.asarray(a), impl=impl)
        except (TypeError, ValueError) as e:
            raise _Invalid(f"{what} cannot be rebuilt as PRNG keys {impl!r}: {e}") from None
    if a.dtype != dtype:
        if a.dtype.kind != "u" or a.dtype.itemsize != dtype.itemsize:
            raise _Invalid(f"{what} holds {a.dtype} data, which cannot be read as the "
                           f"{dtype} the metadata says")
        a = a.view(dtype)
    if a.shape != shape:
        raise _Invalid(f"{what} has shape {a.shape} but the metadata says {list(shape)}")
    return a


def _to_jax(v):
    return v if isinstance(v, jax.Array) else jnp.asarray(v)


# --- the optimizer state's structure ------------------------------------------------------------


def _own_state(name):
    """The NamedTuple class ``bpjax.<name>`` (a state bpjax defines, e.g. ``LMState``), or None."""
    import bpjax  # at call time: bpjax imports this module

    cls = getattr(bpjax, name, None) if name in bpjax.__all__ else None
    return cls if isinstance(cls, type) and issubclass(cls, tuple) and \
        hasattr(cls, "_fields") else None


def _describe(x):
    """The container structure of ``x`` as JSON, or ``None`` if it has other nodes
    (NamedTuples of other packages and other registered pytrees, which need the optimizer
    to be rebuilt). bpjax's own NamedTuples are written by name: ``{"bpjax": [name, subs]}``."""
    t = type(x)
    if _own_state(t.__name__) is t:
        subs = [_describe(v) for v in x]
        return None if any(s is None for s in subs) else {"bpjax": [t.__name__, subs]}
    if t is dict:
        items = []
        for k in x:
            if type(k) not in (str, int):
                return None
            sub = _describe(x[k])
            if sub is None:
                return None
            items.append([k, sub])
        return {"dict": items}
    if t in (list, tuple):
        subs = [_describe(v) for v in x]
        return None if any(s is None for s in subs) else {t.__name__: subs}
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(x)) and x is not None:
        return "*"
    return None


def _skeleton(tree):
    """A pytree of zeros with the structure ``_describe`` wrote."""
    if tree == "*":
        return 0
    if isinstance(tree, dict) and len(tree) == 1:
        (kind, items), = tree.items()
        if kind == "dict" and isinstance(items, list) and all(
                isinstance(i, list) and len(i) == 2 and type(i[0]) in (str, int) for i in items):
            return {k: _skeleton(v) for k, v in items}
        if kind in ("list", "tuple") and isinstance(items, list):
            subs = [_skeleton(v) for v in items]
            return subs if kind == "list" else tuple(subs)
        if kind == "bpjax" and isinstance(items, list) and len(items) == 2 and \
                isinstance(items[0], str) and isinstance(items[1], list):
            cls = _own_state(items[0])
            if cls is not None and len(cls._fields) == len(items[1]):
                return cls(*(_skeleton(v) for v in items[1]))
    raise _Invalid(f"the optimizer state's 'tree' is not a tree description: {tree!r:.120}")


def _check_keys(tree, what, json_only=False):
    """Dict keys, at any depth, that the file gives back as they were: str or int (bool
    excluded) in what ``_describe`` writes, str only in JSON metadata (``json_only``)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not (isinstance(k, str) if json_only else type(k) in (str, int)):
                why = (f"JSON keys are str (it would come back as {str(k)!r})" if json_only
                       else "a checkpoint stores dict keys that are str or int only")
                raise TypeError(f"{what} has the key {k!r} ({type(k).__name__}): {why}")
            _check_keys(v, f"{what}[{k!r}]", json_only)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _check_keys(v, f"{what}[{i}]", json_only)


# --- save ---------------------------------------------------------------------------------------


def _as_epoch(epoch, models):
    """``epoch`` as an int (or a list of ``M`` ints for a sweep), from ints or integer arrays."""
    e = np.asarray(epoch) if isinstance(epoch, (jax.Array, np.ndarray, np.generic)) else epoch
    if isinstance(e, np.ndarray) and np.issubdtype(e.dtype, np.integer) and \
            e.shape in ((), (models,)) and np.all(e >= 0):
        return _as_epoch(int(e), models) if e.shape == () else [int(v) for v in e]
    if isinstance(e, int) and not isinstance(e, bool) and e >= 0:
        return e if models is None else [e] * models
    expected = "an int >= 0" + ("" if models is None else f" (or {models} of them, one a model)")
    raise ValueError(f"epoch must be {expected}, got {epoch!r}")


def _check_metadata(metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_keys(metadata, "metadata", json_only=True)
    return metadata


def _split_models(net, params):
    """``(params, M)``: one model's weights (``M = None``) or a sweep's, with a leading axis."""
    leading = [np.shape(w)[:-2] if hasattr(w, "shape") and np.ndim(w) >= 2 else None
               for w in (params if isinstance(params, (tuple, list)) else ())]
    if leading and all(s is not None and len(s) == 1 for s in leading) and \
            len(set(leading)) == 1:
        M = leading[0][0]
        return check_layers(net, params, what="arrays with a leading model axis",
                            leading=(M,), expected="(M, 1 + fan_in, N_l) ="), M
    return check_params(net, params), None


def save(
    path,
    net: Network,
    params,
    opt_state=None,
    *,
    epoch: int = 0,
    metadata: dict | None = None,
    loss=None,
) -> Path:
    """Saves a network, its weights and optionally its optimizer state to one ``.npz`` file.

    Args:
      path: the file to write (replaced atomically if it exists, keeping its permission bits;
        a symbolic link is written through to its target).
      net: the network.
      params: its weights, ``params[l-1]`` of shape ``(1 + fan_in, N_l)``, or a sweep's with a
        leading model axis ``(M, 1 + fan_in, N_l)``; or a :class:`bpjax.FitResult` (from
        :func:`bpjax.fit`, also under ``jax.jit``, or from :func:`bpjax.sweep`) or a
        :class:`Checkpoint`, whose weights, optimizer state and epoch count are saved.
      opt_state: the optimizer state: a pytree whose leaves are arrays of numbers or booleans
        (or typed PRNG keys), e.g. ``optimizer.init(params)``; or ``None``.
      epoch: the number of epochs trained so far (an int, or one per model for a sweep).
      metadata: a JSON-serialisable dict with ``str`` keys, returned by :func:`load` (tuples
        come back as lists).
      loss: the loss the weights were trained on (a name or a :class:`bpjax.Loss`; its name
        is stored), so that resuming from the file trains on it; default: a
        :class:`Checkpoint`'s own, else none.

    Returns:
      The path written (the link's target for a symbolic link).

    Raises:
      TypeError, ValueError: a bad argument, a leaf that a checkpoint cannot hold (named), or
        metadata that is not JSON; nothing is written then.
      FileNotFoundError: the directory of ``path`` does not exist.
    """
    check_network(net, "save")
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}: {path!r:.60}")
    if isinstance(params, Checkpoint) and metadata is None:
        metadata = params.metadata
    if isinstance(params, Checkpoint) and loss is None:
        loss = params.loss
    if loss is not None:
        loss = get_loss(loss).name  # an unknown name or a bad Loss: an error, nothing written
    if hasattr(params, "opt_state") and hasattr(params, "epoch"):  # a FitResult or Checkpoint
        if opt_state is not None:
            raise ValueError("pass either a result or opt_state, not both")
        params, opt_state, epoch = params.params, params.opt_state, params.epoch
    params, models = _split_models(net, params)
    epoch = _as_epoch(epoch, models)
    metadata = _check_metadata(metadata)

    arrays, info = {}, {"params": [], "opt_state": None}
    for l, w in enumerate(params, start=1):
        a, i = _to_numpy(w, f"params[{l - 1}] (layer {l})")
        arrays[f"params/{l - 1}"] = a
        info["params"].append(i)
    if opt_state is not None:
        try:
            flat, _ = jax.tree_util.tree_flatten_with_path(
                opt_state, is_leaf=lambda x: x is None or _is_key(x))
        except (TypeError, ValueError) as e:  # e.g. a dict whose keys cannot be sorted
            raise TypeError(f"opt_state is not a pytree that jax.tree can flatten: {e}") from e
        _check_keys(opt_state, "opt_state")
        treedef = jax.tree.structure(opt_state)
        tree = _describe(opt_state)
        info["opt_state"] = {"structure": str(treedef), "tree": tree, "leaves": []}
        for n, (where, v) in enumerate(flat):
            a, i = _to_numpy(v, f"opt_state{jax.tree_util.keystr(where)} (leaf {n})")
            if models is not None and a.shape[:1] != (models,):
                raise ValueError(
                    f"opt_state{jax.tree_util.keystr(where)} has shape {list(a.shape)}: a "
                    f"sweep's optimizer state has a leading model axis of M = {models}")
            arrays[f"opt_state/{n}"] = a
            info["opt_state"]["leaves"].append(i)
        if tree is not None and jax.tree.structure(_skeleton(tree)) != treedef:
            info["opt_state"]["tree"] = None  # cannot happen; the optimizer rebuilds it then
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "network": _network_to_json(net),
        "epoch": epoch,
        "models": models,
        "arrays": info,
        "metadata": metadata,
        "loss": loss,
    }
    try:
        blob = json.dumps(meta).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable: {e}") from e
    arrays[_META] = np.frombuffer(blob, dtype=np.uint8)

    def same_as_written(tmp: Path):  # read back as load reads, before it takes the name
        meta_back, arrays_back = _read(tmp, shown=path)
        try:
            same = meta_back == json.loads(blob) and _parse(meta_back)[0] == net
        except _Invalid:
            same = False
        for name, a in arrays.items():
            b = arrays_back.get(name, a) if name == _META else arrays_back.get(name)
            same = same and b is not None and (b.dtype, b.shape) == (a.dtype, a.shape) and \
                b.tobytes() == a.tobytes()
        if not same:
            raise OSError(f"the checkpoint written to {path} does not read back as written; "
                          f"{path} is left as it was")

    with atomic_file(path, check=same_as_written) as f:
        np.savez(f, **arrays)
    return Path(os.fspath(path))


# --- atomic writes ------------------------------------------------------------------------------


def _target(path: Path) -> Path:
    """The file that writing ``path`` replaces: ``path`` itself, or a link's final target."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def atomic_file(path, *, check=None) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once it is completely written.

    The data go to a temporary file in the same directory, flushed to disk, then renamed over
    ``path``; on any error the temporary file is removed and ``path`` is left as it was. An
    existing file's permission bits are kept (a new file gets ``0o666`` less the umask), and
    a symbolic link is written through: its target is replaced, the link stays.

    Args:
      path: the file to write.
      check: optional ``check(tmp_path)``, called once the data are on disk, before the rename;
        an exception from it leaves ``path`` as it was.

    Raises:
      FileNotFoundError: the directory of ``path`` does not exist (naming ``path``).
      IsADirectoryError: ``path`` is a directory.
    """
    shown = Path(os.fspath(path))
    path = _target(shown)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {shown}: the directory {path.parent} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {shown}: it is a directory")
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    while True:  # os.open with 0o666 applies the umask, as open() does; mkstemp would not
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise type(e)(e.errno, f"cannot write {shown}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself, durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- load ---------------------------------------------------------------------------------------


def _read(path: Path, shown=None) -> tuple[dict, dict]:
    """The metadata and the arrays (numpy) of a checkpoint file, or an error naming it."""
    shown = path if shown is None else shown
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {shown}")
    if not path.is_file():
        raise ValueError(f"{shown} is not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"{shown} is not a bpjax checkpoint: it is a single .npy array (np.save), "
                         f"not the .npz archive that bpjax.save writes")
    if not head.startswith(_ZIP_MAGIC):
        what = "an empty file" if not head else f"a file that starts with {head!r}"
        raise ValueError(f"{shown} is not a bpjax checkpoint (not an .npz archive: {what}); "
                         f"it is truncated or corrupt, or another kind of file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            arrays = {}
            for name in names:
                try:
                    arrays[name] = z[name]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise ValueError(f"{shown}: the entry {name!r} holds pickled Python "
                                         f"objects, which a bpjax checkpoint never does; "
                                         f"it is not read") from None
                    raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        if str(e).startswith(str(shown)):
            raise
        raise ValueError(
            f"{shown} is not a readable bpjax checkpoint (truncated or corrupt?): {e}") from e
    if _META not in arrays:
        raise ValueError(
            f"{shown} is not a bpjax checkpoint: it has no {_META} entry "
            f"(entries: {', '.join(list(arrays)[:5]) or 'none'})")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{shown}: the {_META} entry is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{shown} is not a bpjax checkpoint (format {found!r})")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{shown} is a bpjax checkpoint of version {meta.get('version')!r}; this bpjax "
            f"reads version {VERSION}")
    return meta, arrays


def _parse(meta: dict) -> tuple:
    """The parts of the metadata, each checked: ``(net, models, epoch, params_info, state_info,
    metadata)``; :class:`_Invalid` says what is wrong."""
    expected = {"format", "version", "network", "epoch", "arrays", "metadata"}
    missing = expected - set(meta)
    if missing:
        raise _Invalid(f"it has no {', '.join(sorted(missing))}")
    net = _network_from_json(meta["network"])
    models = meta.get("models")  # absent from the files of earlier bpjax: one model
    if models is not None and not (isinstance(models, int) and not isinstance(models, bool)
                                   and models >= 1):
        raise _Invalid(f"'models' must be null or an int >= 1, got {models!r}")
    epoch = meta["epoch"]
    if models is not None and isinstance(epoch, list) and len(epoch) == models:
        ok = all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epoch)
    else:
        ok = isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0
    if not ok:
        raise _Invalid(f"'epoch' must be an int >= 0{'' if models is None else ' (or M of them)'}"
                       f", got {epoch!r}")
    info = meta["arrays"]
    if not isinstance(info, dict) or not isinstance(info.get("params"), list) or \
            "opt_state" not in info:
        raise _Invalid("'arrays' must be an object with 'params' (a list) and 'opt_state'")
    if len(info["params"]) != net.depth:
        raise _Invalid(f"'arrays' describes {len(info['params'])} weight matrices for a network "
                       f"of L = {net.depth} layers")
    state = info["opt_state"]
    if state is not None and not (
            isinstance(state, dict) and isinstance(state.get("structure"), str)
            and isinstance(state.get("leaves"), list)):
        raise _Invalid("the optimizer state must be null or an object with 'structure' and "
                       "'leaves'")
    if not isinstance(meta["metadata"], dict):
        raise _Invalid(f"'metadata' must be an object, got {meta['metadata']!r:.60}")
    loss = meta.get("loss")  # absent from the files of earlier bpjax: not recorded
    if loss is not None and not (isinstance(loss, str) and loss):
        raise _Invalid(f"'loss' must be null or a loss's name, got {loss!r:.60}")
    return net, models, epoch, info["params"], state, meta["metadata"], loss


def load(path, *, net: Network | None = None,
         optimizer: optax.GradientTransformation | None = None) -> Checkpoint:
    """Loads what :func:`save` wrote.

    Args:
      path: the file (a symbolic link is followed).
      net: optional: the network you expect; a file holding another one is an error.
      optimizer: the optimizer whose state the file holds, to rebuild its structure (optax's
        states are NamedTuples); ``None``: a state of plain containers as saved, or plain
        SGD's ``optax.EmptyState()``. Ignored if the file holds no optimizer state.

    Returns:
      A :class:`Checkpoint` ``(net, params, opt_state, epoch, metadata, models, loss)``.

    Raises:
      TypeError: ``net`` is not a :class:`bpjax.Network` or ``optimizer`` not an optax
        transformation.
      FileNotFoundError: no file at ``path``.
      ValueError: the file is truncated, corrupt or not a bpjax checkpoint, or its metadata
        were edited into something save does not write; or it holds another network than
        ``net``, or a state that does not fit ``optimizer``. The message names the file.
    """
    if net is not None:
        check_network(net, "load(net=...)", what="net must be a bpjax.Network or None")
    optimizer = as_transformation(optimizer)  # a TypeError for what is not an optimizer
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    path = Path(path)
    meta, arrays = _read(path)
    try:
        saved_net, models, epoch, params_info, state_info, metadata, loss = _parse(meta)
        if net is not None and net != saved_net:
            raise ValueError(f"{path} holds another network:\n{saved_net!r}\nexpected\n{net!r}")

        def array(name, info, what):
            if name not in arrays:
                raise _Invalid(f"the entry {name} ({what}) is missing")
            return _from_numpy(arrays[name], info, what)

        params = tuple(_to_jax(array(f"params/{l - 1}", info, f"params[{l - 1}] (layer {l})"))
                       for l, info in enumerate(params_info, start=1))
        try:
            params = (check_params(saved_net, params) if models is None else check_layers(
                saved_net, params, what="arrays with a leading model axis", leading=(models,),
                expected="(M, 1 + fan_in, N_l) ="))
        except (TypeError, ValueError) as e:
            raise _Invalid(f"the weights do not fit the saved network: {e}") from None

        opt_state = None
        if state_info is not None:
            leaves = [array(f"opt_state/{n}", info, f"opt_state leaf {n}")
                      for n, info in enumerate(state_info["leaves"])]
            opt_state = _rebuild_state(path, state_info, leaves, optimizer, params, models)
    except _Invalid as e:
        raise ValueError(f"{path}: the checkpoint is not as bpjax.save writes it (corrupt or "
                         f"hand-edited?): {e}") from None
    if models is not None:
        epoch = np.asarray(epoch, dtype=np.int64)
    return Checkpoint(saved_net, params, opt_state, epoch, metadata, models, loss)


def _rebuild_state(path, state_info, leaves, optimizer, params, models):
    """The optimizer state from its leaves: structure from ``optimizer.init`` or the file."""
    if optimizer is None and state_info.get("tree") is not None:
        treedef = jax.tree.structure(_skeleton(state_info["tree"]))
        if treedef.num_leaves != len(leaves):
            raise _Invalid(f"the optimizer state's tree has {treedef.num_leaves} leaves, the "
                           f"file {len(leaves)}")
        return jax.tree.unflatten(treedef, [_to_jax(v) for v in leaves])
    init = optax.EmptyState if optimizer is None else optimizer.init
    if models is not None and optimizer is not None:
        init = jax.vmap(init)
    template = jax.eval_shape(init) if optimizer is None else jax.eval_shape(init, params)
    leaves_t, treedef = jax.tree.flatten(template)
    if str(treedef) != state_info["structure"]:
        raise ValueError(
            f"{path} holds an optimizer state of structure {state_info['structure']}, "
            f"but the optimizer given makes {treedef}: pass the optimizer that made it, "
            f"load(path, optimizer=...)")
    if len(leaves) != len(leaves_t):
        raise _Invalid(f"the optimizer state has {len(leaves)} leaves, its structure "
                       f"{len(leaves_t)}")
    out = []
    for n, (v, t) in enumerate(zip(leaves, leaves_t)):
        v = _to_jax(v)
        if v.shape != t.shape or v.dtype != state_dtype(v.dtype, t.dtype):
            raise ValueError(
                f"{path}: opt_state leaf {n} is {v.dtype}{list(v.shape)}, but the optimizer "
                f"given makes {t.dtype}{list(t.shape)}")
        out.append(v)
    return jax.tree.unflatten(treedef, out)
