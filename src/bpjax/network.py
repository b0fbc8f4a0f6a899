"""The network: layers of neurons, each with its own activation, wired as a DAG.

The paper's model (§1.1): layer ``l ∈ 1..L`` has ``N_l`` neurons; neuron ``(l, k)`` computes
``a^l_k = Σ_j w^l_jk φ^{l-1}_j`` over its inputs, with ``φ^{l-1}_0 = 1`` so that ``w^l_0k`` is
the bias, then outputs ``φ^l_k = φ^l_k(a^l_k)``. The boundary conditions are ``φ^0 = x``
(``N_0 = D``) and ``φ_θ(x) = φ^L`` (``N_L = d``).

The paper's notes allow any DAG ("skip connections") and leave a formulation in terms of
graph adjacency as an exercise. Here:

* ``Layer(..., inputs=(0, 2))``: the layer reads the outputs of layers 0 (the input x) and 2,
  concatenated in that order after the bias row. ``inputs=None`` is the previous layer.
* ``Layer(..., adjacency=M)``: ``M[j-1][k]`` says whether the connection ``w^l_jk`` exists
  (``j ≥ 1``); absent connections are structural zeros.
* ``Layer(..., bias=False)``: no ``w^l_0k``. Row 0 stays in the parameters, so indices
  remain the paper's, but it is a structural zero.

:class:`Network` and :class:`Layer` are frozen and hashable, so a network is a static
argument of ``jax.jit``. Both are validated when constructed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from bpjax import activations as _activations
from bpjax.activations import Activation

__all__ = ["Layer", "Network", "check_network", "is_int"]


def is_int(v) -> bool:
    """Whether ``v`` is an integer (Python or numpy), not a bool: the paper's indices and sizes."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _activation_label(act) -> str:
    return act if isinstance(act, str) else act.name


@dataclasses.dataclass(frozen=True, repr=False)
class Layer:
    """One layer ``l`` of ``N_l`` neurons.

    Args:
      size: ``N_l ≥ 1``.
      activation: one name (or :class:`~bpjax.Activation`) for every neuron, or a sequence of
        ``N_l`` of them, one per neuron: ``φ^l_k`` for ``k = 1..N_l``.
      inputs: the layers whose outputs this layer reads, as indices ``0..l-1`` (0 is the input
        ``x``); ``None`` means the previous layer. The inputs are concatenated in the order
        given, after the bias row: they are the rows ``j = 1..fan_in`` of the weights.
      bias: whether ``w^l_0k`` exists. With ``bias=False`` row 0 is a structural zero.
      adjacency: optional boolean array ``(fan_in, N_l)``: ``adjacency[j-1][k-1]`` is whether
        the connection ``w^l_jk`` exists. Absent connections are structural zeros: the forward
        pass ignores them, their gradient is 0 and training never changes them.

    Activation names are looked up once, when the layer is built, and the functions they name
    then are part of the layer's identity (its ``==`` and ``hash``, which ``jax.jit`` caches
    on): re-registering a name with ``register_activation(..., overwrite=True)`` changes the
    layers built afterwards, never one built before, nor what was compiled for it.
    """

    size: int
    activation: str | Activation | tuple[str | Activation, ...] = "logistic"
    inputs: tuple[int, ...] | None = None
    bias: bool = True
    adjacency: tuple[tuple[bool, ...], ...] | None = None
    # (name or Activation, the Activation it resolved to) for each distinct one: identity, above.
    _functions: tuple[tuple, ...] = dataclasses.field(init=False, repr=False, default=())

    def __post_init__(self):
        if not is_int(self.size) or self.size < 1:
            raise ValueError(f"Layer size must be an int >= 1, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))

        act = self.activation
        if isinstance(act, (str, Activation)):
            functions = ((act, _activations.get_activation(act)),)
        elif isinstance(act, Sequence):
            act = tuple(act)
            if len(act) != self.size:
                raise ValueError(
                    f"Layer of size {self.size} got {len(act)} per-neuron activations; "
                    f"expected one name, or a sequence of exactly {self.size}"
                )
            functions = tuple((a, _activations.get_activation(a)) for a in dict.fromkeys(act))
            object.__setattr__(self, "activation", act)
        else:
            _activations.get_activation(act)  # raises TypeError naming the type
        object.__setattr__(self, "_functions", functions)

        if self.inputs is not None:
            inputs = (self.inputs,) if is_int(self.inputs) else self.inputs
            if not isinstance(inputs, Sequence) or isinstance(inputs, str):
                raise TypeError(f"Layer inputs must be a tuple of layer indices, got {inputs!r}")
            inputs = tuple(inputs)
            if not inputs:
                raise ValueError("Layer inputs is empty: name at least one earlier layer (0 is x)")
            for i in inputs:
                if not is_int(i) or i < 0:
                    raise ValueError(
                        f"Layer inputs must be layer indices >= 0 (0 is the input x), got {i!r}"
                    )
            if len(set(inputs)) != len(inputs):
                raise ValueError(f"Layer inputs {inputs} names a layer twice")
            object.__setattr__(self, "inputs", tuple(int(i) for i in inputs))

        if not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(f"Layer bias must be True or False, got {self.bias!r}")

        if self.adjacency is not None:
            try:
                m = np.asarray(self.adjacency)
            except ValueError:  # ragged rows
                raise ValueError(
                    f"Layer adjacency must be a rectangular (fan_in, {self.size}) boolean array, "
                    f"got rows of different lengths"
                ) from None
            if m.ndim != 2 or m.shape[1] != self.size:
                raise ValueError(
                    f"Layer adjacency must have shape (fan_in, {self.size}), got shape {m.shape}"
                )
            if m.dtype != np.bool_:
                if not np.isin(m, (0, 1)).all():
                    raise ValueError("Layer adjacency must hold booleans (or 0/1)")
                m = m.astype(bool)
            object.__setattr__(self, "adjacency", tuple(tuple(bool(v) for v in row) for row in m))

    @functools.cached_property
    def activations(self) -> tuple[Activation, ...]:
        """The activation of each neuron, ``(φ^l_1, …, φ^l_{N_l})``, as built (see above)."""
        if isinstance(self.activation, (str, Activation)):
            return (self._functions[0][1],) * self.size
        resolved = dict(self._functions)
        return tuple(resolved[a] for a in self.activation)

    def __repr__(self) -> str:
        act = self.activation
        act = (
            repr(_activation_label(act))
            if isinstance(act, (str, Activation))
            else "(" + ", ".join(repr(_activation_label(a)) for a in act) + ")"
        )
        parts = [str(self.size), act]
        if self.inputs is not None:
            parts.append(f"inputs={self.inputs}")
        if not self.bias:
            parts.append("bias=False")
        if self.adjacency is not None:
            parts.append(f"adjacency=<{len(self.adjacency)}x{self.size}>")
        return f"Layer({', '.join(parts)})"


@dataclasses.dataclass(frozen=True, repr=False)
class Network:
    """A feedforward network, or any DAG of layers.

    Args:
      inputs: ``D = N_0 ≥ 1``, the dimension of ``x``.
      layers: the layers ``1..L``; the last one is the output, ``N_L = d``.

    Example:
      The quadratic-regression network of the paper's figure 2 (§1.3.1):

      >>> import bpjax as bp
      >>> net = bp.Network(inputs=2, layers=[bp.Layer(2, ("identity", "square")),
      ...                                    bp.Layer(1, "identity", bias=False)])
      >>> net.sizes, net.depth, net.num_params
      ((2, 2, 1), 2, 8)
    """

    inputs: int
    layers: tuple[Layer, ...]

    def __post_init__(self):
        if not is_int(self.inputs) or self.inputs < 1:
            raise ValueError(f"Network inputs (D) must be an int >= 1, got {self.inputs!r}")
        object.__setattr__(self, "inputs", int(self.inputs))
        if isinstance(self.layers, Layer) or not isinstance(self.layers, Sequence):
            raise TypeError(f"Network layers must be a sequence of Layer, got {self.layers!r}")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("Network needs at least one layer (L >= 1)")
        for l, layer in enumerate(layers, start=1):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {l} must be a bpjax.Layer, got {type(layer).__name__}")
        object.__setattr__(self, "layers", layers)

        sizes = (self.inputs, *(layer.size for layer in layers))
        for l, layer in enumerate(layers, start=1):
            for s in self.sources(l):
                if s > len(layers):
                    raise ValueError(
                        f"layer {l} reads layer {s}, which is out of range: this network has "
                        f"layers 0..{len(layers)} (0 is the input x)"
                    )
                if s >= l:
                    what = "itself" if s == l else "a later layer"
                    raise ValueError(
                        f"layer {l} reads layer {s} ({what}): inputs must name earlier layers "
                        f"0..{l - 1} (0 is the input x); a network must be a DAG"
                    )
            if layer.adjacency is not None:
                fan_in = sum(sizes[s] for s in self.sources(l))
                shape = (len(layer.adjacency), layer.size)
                if shape != (fan_in, layer.size):
                    raise ValueError(
                        f"layer {l} adjacency must have shape (fan_in, N_l) = "
                        f"({fan_in}, {layer.size}), got {shape}"
                    )
                m = np.array(layer.adjacency, dtype=bool)
                lonely = np.flatnonzero(~m.any(axis=0))
                if lonely.size:
                    k = int(lonely[0]) + 1
                    raise ValueError(
                        f"layer {l} adjacency leaves neuron (l={l}, k={k}) with no inputs: "
                        f"column {k - 1} is all False"
                    )

    # --- identity: jax.jit hashes a static network on every call -----------------------------

    def __hash__(self) -> int:
        """The hash of ``(inputs, layers)``, computed once: every eager call of bpjax hands the
        network to ``jax.jit`` as a static argument, which hashes it."""
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.inputs, self.layers))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        """Pickles without the cached hash: strings hash differently in another process."""
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    # --- structure -------------------------------------------------------------------------

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        """``(N_0, N_1, …, N_L)`` with ``N_0 = D`` and ``N_L = d``."""
        return (self.inputs, *(layer.size for layer in self.layers))

    @property
    def depth(self) -> int:
        """``L``, the number of layers with weights."""
        return len(self.layers)

    @property
    def outputs(self) -> int:
        """``d = N_L``."""
        return self.layers[-1].size

    def layer(self, l: int) -> Layer:
        """Layer ``l`` (1-based, as in the paper)."""
        if not 1 <= l <= self.depth:
            raise IndexError(f"layer index must be in 1..{self.depth}, got {l}")
        return self.layers[l - 1]

    def sources(self, l: int) -> tuple[int, ...]:
        """The layers that layer ``l`` reads, in concatenation order."""
        return self._sources[l - 1] if 1 <= l <= self.depth else self.layer(l).inputs

    @functools.cached_property
    def _sources(self) -> tuple[tuple[int, ...], ...]:
        return tuple((l - 1,) if layer.inputs is None else layer.inputs
                     for l, layer in enumerate(self.layers, start=1))

    def consumers(self, l: int) -> tuple[int, ...]:
        """The layers that read layer ``l`` (``0 ≤ l < L``)."""
        return tuple(m for m in range(l + 1, self.depth + 1) if l in self.sources(m))

    def fan_in(self, l: int) -> int:
        """``N_{l-1}`` for a feedforward layer: the number of rows ``j ≥ 1`` of ``w^l``."""
        sizes = self.sizes
        return sum(sizes[s] for s in self.sources(l))

    def blocks(self, l: int) -> tuple[tuple[int, slice], ...]:
        """For each source ``s`` of layer ``l``, the rows of ``w^l`` that multiply ``φ^s``."""
        out, start = [], 1
        for s in self.sources(l):
            out.append((s, slice(start, start + self.sizes[s])))
            start += self.sizes[s]
        return tuple(out)

    @functools.cached_property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """The shape ``(1 + fan_in, N_l)`` of each ``params[l-1]``."""
        return tuple((1 + self.fan_in(l), self.layer(l).size) for l in range(1, self.depth + 1))

    def structure(self, l: int) -> np.ndarray:
        """Boolean ``(1 + fan_in, N_l)``: True where ``w^l_jk`` exists, False for a structural 0.

        The array is read-only (it is computed once per network).
        """
        self.layer(l)  # checks the index
        return self._structures[l - 1]

    @functools.cached_property
    def _structures(self) -> tuple[np.ndarray, ...]:
        out = []
        for layer, shape in zip(self.layers, self.shapes):
            m = np.ones(shape, dtype=bool)
            m[0] = layer.bias
            if layer.adjacency is not None:
                m[1:] = np.array(layer.adjacency, dtype=bool)
            m.setflags(write=False)
            out.append(m)
        return tuple(out)

    def is_dense(self, l: int) -> bool:
        """Whether layer ``l`` has no structural zeros (a bias and every connection)."""
        self.layer(l)  # checks the index
        return self._dense[l - 1]

    @functools.cached_property
    def _dense(self) -> tuple[bool, ...]:
        return tuple(bool(m.all()) for m in self._structures)

    @functools.cached_property
    def num_params(self) -> int:
        """The number of weights ``w^l_jk`` in θ, structural zeros excluded."""
        return int(sum(self.structure(l).sum() for l in range(1, self.depth + 1)))

    @property
    def is_feedforward(self) -> bool:
        """Whether every layer reads exactly the previous one."""
        return all(self.sources(l) == (l - 1,) for l in range(1, self.depth + 1))

    # --- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        layers = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Network(inputs={self.inputs}, layers=[\n    {layers},\n])"

    def summary(self) -> str:
        """A table of the layers: sizes, activations, sources and weight counts."""
        rows = [("l", "N_l", "activation", "reads", "w^l shape", "weights")]
        rows.append(("0", str(self.inputs), "input x", "", "", ""))
        for l, layer in enumerate(self.layers, start=1):
            acts = [a.name for a in layer.activations]
            counts = dict.fromkeys(acts, 0)
            for a in acts:
                counts[a] += 1
            act = ", ".join(f"{n}×{c}" if len(counts) > 1 else n for n, c in counts.items())
            shape = self.shapes[l - 1]
            rows.append((
                str(l), str(layer.size), act, ",".join(map(str, self.sources(l))),
                f"{shape[0]}×{shape[1]}", str(int(self.structure(l).sum())),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"L = {self.depth}, D = {self.inputs}, d = {self.outputs}, "
                     f"{self.num_params} weights (structural zeros excluded)")
        return "\n".join(lines)


def check_network(net, where: str, what: str | None = None) -> Network:
    """``net`` if it is a :class:`Network`, else a ``TypeError`` naming ``where`` it was given.

    The first check of every public function that takes a network: ``bp.forward(None, ...)``
    says what it expected rather than failing on a missing attribute later.
    """
    if not isinstance(net, Network):
        what = what or f"{where} expects a bpjax.Network"
        raise TypeError(f"{what}, got {type(net).__name__}: {net!r:.60}")
    return net
