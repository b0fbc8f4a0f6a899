"""The competitors: the same dense tanh MLPs and the same per-sample SGD, written without bpjax.

Every competitor starts from the *same* weights (bpjax's ``params``, converted) and takes the
same steps, so that timings compare equal work and final losses can be compared as a guard:

    per-sample SGD (Algorithm 1):  w ← w − (η/N) · ∂L/∂w(x_i),   i = 1..N in order,
    ∂L/∂w(x_i) = Σ_r (φ_θ(x_i)_r − y_{i,r}) ∂φ_θ(x_i)_r/∂w      (no 1/N),

that is the gradient of ``½‖φ_θ(x_i) − y_i‖²``, with a step ``lr = η/N``.

An MLP here is a list of ``(W, b)`` with ``W: (fan_in, N_l)`` and ``b: (N_l,)``: bpjax's
``params[l-1]`` is ``concat([b[None], W])``. Hidden layers use ``tanh`` and the output layer
the identity, unless a competitor says otherwise. The plain-JAX MLP is written here on purpose
(not with bpjax) so that ``jax.grad`` differentiates ordinary JAX code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------- conversions


def to_mlp(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """bpjax ``params`` (bias in row 0) -> ``[(W, b), ...]`` as numpy arrays, dtype kept."""
    return [(np.asarray(w[1:]), np.asarray(w[0])) for w in params]


def mlp_loss_np(mlp, X, Y, activations=None) -> float:
    """Loss (1), ``1/(2N) Σ_i ‖φ_θ(x_i) − y_i‖²``, in float64 numpy: the common yardstick.

    ``activations``: one spec per layer (see :func:`layer_function`); default tanh on the
    hidden layers and the identity on the output.
    """
    h = np.asarray(X, np.float64)
    for (W, b), (phi, _) in zip(mlp, _numpy_layers(mlp, activations)):
        h = phi(h @ np.asarray(W, np.float64) + np.asarray(b, np.float64))
    r = h - np.asarray(Y, np.float64).reshape(h.shape)
    return float(0.5 * np.sum(r * r) / r.shape[0])


# --------------------------------------------------------------------------- activations


def _np_logistic(a):
    return 0.5 * (1 + np.tanh(0.5 * a))  # = 1 / (1 + e^{-a}), without overflow


# name -> (φ(a), ∂φ/∂a as a function of (a, φ)) in numpy, and φ in JAX: the competitors' own,
# written without bpjax; each derivative from what the forward pass already has (tanh' =
# 1 − φ², logistic' = φ(1 − φ)), as a numpy user writes it.
NUMPY_ACTIVATIONS = {
    "identity": (lambda a: a, lambda a, phi: np.ones_like(a)),
    "tanh": (np.tanh, lambda a, phi: 1 - phi * phi),
    "logistic": (_np_logistic, lambda a, phi: phi * (1 - phi)),
    "relu": (lambda a: np.maximum(a, 0), lambda a, phi: (a > 0).astype(a.dtype)),
    "softplus": (lambda a: np.logaddexp(a, 0), lambda a, phi: _np_logistic(a)),
    "square": (lambda a: a * a, lambda a, phi: 2 * a),
}
JAX_ACTIVATIONS = {
    "identity": lambda a: a, "tanh": jnp.tanh, "logistic": jax.nn.sigmoid,
    "relu": jax.nn.relu, "softplus": jax.nn.softplus, "square": jnp.square,
}


def layer_function(spec, table, where):
    """A layer's activation from its spec: a name, or one name per neuron (a per-neuron mix).

    A mix is applied as a user of numpy or JAX writes it: each distinct function on the whole
    layer, then one select per function (``where`` is ``np.where`` or ``jnp.where``).
    """
    if isinstance(spec, str):
        return table[spec]
    names = list(dict.fromkeys(spec))
    masks = [np.array([s == n for s in spec]) for n in names]

    def mixed(*args):
        out = table[names[0]](*args)
        for n, m in zip(names[1:], masks[1:]):
            out = where(m, table[n](*args), out)
        return out

    return mixed


def _numpy_layers(mlp, activations=None):
    """``(φ, ∂φ/∂a)`` per layer from ``activations`` (default: tanh, then the identity); the
    derivative takes ``(a, φ)``, and is ``None`` for an identity layer (nothing to multiply)."""
    if activations is None:
        activations = ("tanh",) * (len(mlp) - 1) + ("identity",)
    phis = {n: f for n, (f, _) in NUMPY_ACTIVATIONS.items()}
    dphis = {n: d for n, (_, d) in NUMPY_ACTIVATIONS.items()}
    return [(layer_function(s, phis, np.where),
             None if s == "identity" else layer_function(s, dphis, np.where))
            for s in activations]


def jax_mlp(activations):
    """The forward pass of a plain JAX MLP with one activation spec per layer (a name, or one
    name per neuron; see :func:`layer_function`), for :func:`make_jax_scan_trainer`."""
    fs = [layer_function(s, JAX_ACTIVATIONS, jnp.where) for s in activations]

    def forward(mlp, X):
        h = X
        for (W, b), f in zip(mlp, fs):
            h = f(h @ W + b)
        return h

    return forward


# --------------------------------------------------------------------------- plain JAX


def jax_mlp_forward(mlp, X):
    """A plain JAX tanh MLP: ``tanh`` on hidden layers, identity on the output."""
    h = X
    for W, b in mlp[:-1]:
        h = jnp.tanh(h @ W + b)
    W, b = mlp[-1]
    return h @ W + b


def jax_mlp_loss(mlp, X, Y):
    """Loss (1) of the plain JAX MLP."""
    r = jax_mlp_forward(mlp, X) - Y
    return 0.5 * jnp.sum(r * r) / X.shape[0]


jax_mlp_grad = jax.jit(jax.grad(jax_mlp_loss))
"""``jax.grad`` of loss (1) on the plain JAX MLP, jitted: the W3/W5 baseline."""


def squared(phi, y):
    """``ℓ = ½‖φ − y‖²`` over the last axis: loss (1)'s per-sample term."""
    r = phi - y
    return 0.5 * jnp.sum(r * r, axis=-1)


def _sample_loss(forward, ell, mlp, x, y):
    return ell(forward(mlp, x), y)


def make_jax_scan_trainer(forward, ell=squared):
    """The idiomatic JAX per-sample SGD: ``jax.grad`` of the per-sample loss in ``lax.scan``.

    ``ell(phi, y)`` is the per-sample loss (summed over the last axis), loss (1)'s by default.
    Returns a jitted ``train(mlp, X, Y, lr, epochs) -> (mlp, losses)`` with ``epochs`` static;
    ``losses[e]`` is the mean of ``ell`` after epoch ``e``, as ``bpjax.fit`` reports it.
    """
    grad = jax.grad(functools.partial(_sample_loss, forward, ell))

    def step(mlp, xy, lr):
        g = grad(mlp, *xy)
        return jax.tree.map(lambda w, gw: w - lr * gw, mlp, g), None

    def epoch(mlp, _, X, Y, lr):
        mlp, _ = jax.lax.scan(functools.partial(step, lr=lr), mlp, (X, Y))
        return mlp, jnp.mean(ell(forward(mlp, X), Y))

    @functools.partial(jax.jit, static_argnames="epochs")
    def train(mlp, X, Y, lr, epochs):
        return jax.lax.scan(functools.partial(epoch, X=X, Y=Y, lr=lr), mlp, None, length=epochs)

    return train


jax_mlp_scan_train = make_jax_scan_trainer(jax_mlp_forward)


def quadratic_forward(mlp, X):
    """The paper's network (5)-(6) in plain JAX: ``φ^1 = (a^1_1, (a^1_2)²)``, no output bias."""
    (W1, b1), (W2, _) = mlp
    a1 = X @ W1 + b1
    phi1 = jnp.stack([a1[..., 0], a1[..., 1] ** 2], axis=-1)
    return phi1 @ W2


quadratic_scan_train = make_jax_scan_trainer(quadratic_forward)


# --------------------------------------------------------------------------- numpy


def numpy_sgd(mlp, X, Y, lr: float, epochs: int, activations=None):
    """A plain numpy per-sample SGD loop, hand-written backward pass, updates in place.

    ``activations``: one spec per layer (see :func:`layer_function`), each with its
    derivative from :data:`NUMPY_ACTIVATIONS`; default tanh hidden layers and the identity on
    the output.

    Returns the trained ``[(W, b), ...]`` (copies of the inputs, dtype kept).
    """
    mlp = [(W.copy(), b.copy()) for W, b in mlp]
    dtype = mlp[0][0].dtype
    lr = dtype.type(lr)
    L = len(mlp)
    fs = _numpy_layers(mlp, activations)
    for _ in range(epochs):
        for x, y in zip(X, Y):
            phis, acts = [x], []
            for (W, b), (f, _) in zip(mlp, fs):
                acts.append(phis[-1] @ W + b)
                phis.append(f(acts[-1]))
            delta = phis[-1] - y  # ∂/∂φ^L of ½‖φ^L − y‖²
            if fs[-1][1] is not None:
                delta = delta * fs[-1][1](acts[-1], phis[-1])
            for l in range(L - 1, -1, -1):
                W, b = mlp[l]
                back = W @ delta if l > 0 else None
                W -= lr * np.outer(phis[l], delta)
                b -= lr * delta
                if l > 0:
                    dphi = fs[l - 1][1]
                    delta = back if dphi is None else back * dphi(acts[l - 1], phis[l])
    return mlp


# --------------------------------------------------------------------------- PyTorch


def torch_model(mlp):
    """A ``torch.nn.Sequential`` tanh MLP holding copies of ``mlp``'s weights (float32)."""
    import torch

    layers = []
    for l, (W, b) in enumerate(mlp):
        lin = torch.nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(W.T)))
            lin.bias.copy_(torch.from_numpy(np.array(b)))
        layers.append(lin)
        if l < len(mlp) - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def torch_sgd(model, X, Y, lr: float, epochs: int, ell=None):
    """PyTorch eager per-sample SGD: ``loss.backward()`` and ``torch.optim.SGD`` per sample.

    ``X``, ``Y`` are torch tensors ``(N, D)``, ``(N, d)`` (or targets ``ell`` takes). ``ell``:
    ``(outputs, targets) -> loss``, for one sample and, averaged, for a batch (e.g.
    ``torch.nn.functional.cross_entropy``); ``None``: loss (1)'s ``½‖φ − y‖²``. Returns the
    per-epoch mean loss, computed after each epoch as the other competitors do.
    """
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for i in range(X.shape[0]):
            opt.zero_grad(set_to_none=True)
            if ell is None:
                r = model(X[i]) - Y[i]
                (0.5 * (r * r).sum()).backward()
            else:
                ell(model(X[i]), Y[i]).backward()
            opt.step()
        with torch.no_grad():
            if ell is None:
                r = model(X) - Y
                losses.append(float(0.5 * (r * r).sum() / X.shape[0]))
            else:
                losses.append(float(ell(model(X), Y)))
    return losses


def torch_to_mlp(model):
    """The weights of :func:`torch_model`'s network as ``[(W, b), ...]`` numpy arrays."""
    import torch

    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in lins]


# --------------------------------------------------------------------------- scikit-learn


def sklearn_model(mlp, X, Y, lr: float):
    """An ``MLPRegressor`` doing per-sample SGD, primed with ``mlp``'s weights.

    ``solver="sgd", batch_size=1, momentum=0, alpha=0, learning_rate="constant"``,
    ``shuffle=False``: its loss is ``½(φ − y)²`` per sample, so each step is exactly
    ``w ← w − lr · ∂L/∂w(x_i)``. Call ``partial_fit(X, y)`` once per epoch.
    """
    from sklearn.neural_network import MLPRegressor

    hidden = tuple(W.shape[1] for W, _ in mlp[:-1])
    m = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="tanh",
        solver="sgd",
        batch_size=1,
        learning_rate="constant",
        learning_rate_init=lr,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        shuffle=False,
        early_stopping=False,
        tol=0.0,
        max_iter=1,
    )
    m.partial_fit(X[:1], Y[:1])  # allocates coefs_ (in X's dtype) and the optimizer
    sklearn_reset(m, mlp)
    return m


def sklearn_reset(m, mlp):
    """Puts ``mlp``'s weights back into ``m`` (copies)."""
    m.coefs_ = [W.copy() for W, _ in mlp]
    m.intercepts_ = [b.copy() for _, b in mlp]
    m._optimizer.velocities = [np.zeros_like(p) for p in m.coefs_ + m.intercepts_]


def sklearn_to_mlp(m):
    """``m``'s weights as ``[(W, b), ...]``."""
    return [(W.copy(), b.copy()) for W, b in zip(m.coefs_, m.intercepts_)]
