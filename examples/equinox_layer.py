"""A bpjax network as a layer of an Equinox model, trained with optax through ``jax.grad``.

    pip install 'bpjax[equinox]'
    python examples/equinox_layer.py [--steps 300]

``BPNetwork`` holds a :class:`bpjax.Network` (static: it is hashable) and its ``params`` (a tuple
of arrays: leaves of the module's pytree, so ``eqx.filter_grad`` and optax see them like any
other weights). Its ``__call__`` is ``bp.apply``, so when ``jax.grad`` differentiates the
model, the bpjax part is differentiated by the paper's hand-written backward pass (its
``custom_vjp``), and the cotangent ``∂ℓ/∂x`` it returns flows on into the Equinox layer before
it. Equinox's convention is one sample in, one out: the model is ``jax.vmap``-ed over the batch,
and ``bp.apply`` takes one ``x`` of shape ``(D,)`` as well as a batch.
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import bpjax as bp


class BPNetwork(eqx.Module):
    """A bpjax network as an Equinox layer: ``x (D,) -> φ_θ(x) (d,)``."""

    net: bp.Network = eqx.field(static=True)
    params: tuple  # params[l-1] == w^l, shape (1 + fan_in, N_l)

    def __init__(self, net: bp.Network, key: jax.Array, dtype=None):
        self.net = net
        self.params = bp.init(net, key, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return bp.apply(self.net, self.params, x)


class Model(eqx.Module):
    """``x (2,)`` → an Equinox linear layer, tanh → a bpjax DAG with a skip from its input."""

    encoder: eqx.nn.Linear
    body: BPNetwork

    def __init__(self, key: jax.Array, hidden: int = 8, dtype=None):
        k1, k2 = jax.random.split(key)
        self.encoder = eqx.nn.Linear(2, hidden, key=k1, dtype=dtype)
        net = bp.Network(hidden, [bp.Layer(hidden, "tanh"),
                                  bp.Layer(1, "identity", inputs=(0, 1))])
        self.body = BPNetwork(net, k2, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.body(jnp.tanh(self.encoder(x)))


def dataset(n: int = 128, dtype=jnp.float32):
    """``y = sin(x_1) cos(x_2)`` on ``[-2, 2]²``."""
    X = jax.random.uniform(jax.random.key(1), (n, 2), dtype, -2, 2)
    return X, (jnp.sin(X[:, 0]) * jnp.cos(X[:, 1]))[:, None]


def loss(model: Model, X: jax.Array, Y: jax.Array) -> jax.Array:
    """Any loss: here Huber, which bpjax does not know."""
    return jnp.mean(optax.huber_loss(jax.vmap(model)(X), Y, delta=0.5))


def train(model: Model, X, Y, steps: int, learning_rate: float = 0.01):
    """A plain optax loop; ``eqx.filter_value_and_grad`` is ``jax.value_and_grad`` on the arrays."""
    opt = optax.adam(learning_rate)
    state = opt.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, state):
        value, grads = eqx.filter_value_and_grad(loss)(model, X, Y)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, value

    losses = []
    for _ in range(steps):
        model, state, value = step(model, state)
        losses.append(float(value))
    return model, losses


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    X, Y = dataset()
    model = Model(jax.random.key(0))
    jaxpr = str(jax.make_jaxpr(lambda m: jax.grad(loss)(m, X, Y))(model))
    model, losses = train(model, X, Y, args.steps)
    print(f"Huber loss: {losses[0]:.4f} (step 1) -> {losses[-1]:.4f} (step {args.steps}); "
          f"the gradient's jaxpr runs bpjax's backward pass: {'name=backward_pass' in jaxpr}")
    return {"losses": losses, "model": model}


if __name__ == "__main__":
    main()
