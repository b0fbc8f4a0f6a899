"""A bpjax network as a layer of a Flax NNX model, trained with optax through ``jax.grad``.

    pip install 'bpjax[flax]'
    python examples/flax_nnx_layer.py [--steps 300]

``BPNetwork`` keeps the :class:`bpjax.Network` as a plain (static) attribute and its weights
as one ``nnx.Param`` per layer, ``w[l-1] == w^l``. Its ``__call__`` is ``bp.apply``, so when
``jax.grad`` differentiates the model, the bpjax part is differentiated by the paper's
hand-written backward pass (its ``custom_vjp``), and the cotangent ``∂ℓ/∂x`` it returns flows
on into the NNX layer before it. The training loop is NNX's functional API with plain optax:
``nnx.split`` the model into its graph and its ``nnx.Param`` state, ``jax.value_and_grad`` a
loss of that state, ``optax`` on the state, ``nnx.update`` the model at the end.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import bpjax as bp


class BPNetwork(nnx.Module):
    """A bpjax network as an NNX layer: ``X (N, D) -> φ_θ(X) (N, d)``."""

    def __init__(self, net: bp.Network, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.net = net  # hashable and not an array: static graph data
        self.w = nnx.List([nnx.Param(w) for w in bp.init(net, rngs.params(), dtype=dtype)])

    def __call__(self, X: jax.Array) -> jax.Array:
        return bp.apply(self.net, tuple(w[...] for w in self.w), X)


class Model(nnx.Module):
    """``X (N, 2)`` → an NNX linear layer, tanh → a bpjax DAG with a skip from its input."""

    def __init__(self, *, rngs: nnx.Rngs, hidden: int = 8, dtype=jnp.float32):
        self.encoder = nnx.Linear(2, hidden, rngs=rngs, dtype=dtype, param_dtype=dtype)
        net = bp.Network(hidden, [bp.Layer(hidden, "tanh"),
                                  bp.Layer(1, "identity", inputs=(0, 1))])
        self.body = BPNetwork(net, rngs=rngs, dtype=dtype)

    def __call__(self, X: jax.Array) -> jax.Array:
        return self.body(jnp.tanh(self.encoder(X)))


def dataset(n: int = 128, dtype=jnp.float32):
    """``y = sin(x_1) cos(x_2)`` on ``[-2, 2]²``."""
    X = jax.random.uniform(jax.random.key(1), (n, 2), dtype, -2, 2)
    return X, (jnp.sin(X[:, 0]) * jnp.cos(X[:, 1]))[:, None]


def loss(model: Model, X: jax.Array, Y: jax.Array) -> jax.Array:
    """Any loss: here Huber, which bpjax does not know."""
    return jnp.mean(optax.huber_loss(model(X), Y, delta=0.5))


def loss_of_params(graphdef, params, X, Y):
    """``loss`` as a function of the model's ``nnx.Param`` state, for ``jax.grad``."""
    return loss(nnx.merge(graphdef, params), X, Y)


def train(model: Model, X, Y, steps: int, learning_rate: float = 0.01):
    """A plain optax loop over the ``nnx.Param`` state; the model is updated at the end."""
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(learning_rate)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss_of_params, argnums=1)(graphdef, params, X, Y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(steps):
        params, state, value = step(params, state)
        losses.append(float(value))
    nnx.update(model, params)
    return model, losses


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    X, Y = dataset()
    model = Model(rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    jaxpr = str(jax.make_jaxpr(jax.grad(loss_of_params, argnums=1), static_argnums=0)(
        graphdef, params, X, Y))
    model, losses = train(model, X, Y, args.steps)
    print(f"Huber loss: {losses[0]:.4f} (step 1) -> {losses[-1]:.4f} (step {args.steps}); "
          f"the gradient's jaxpr runs bpjax's backward pass: {'name=backward_pass' in jaxpr}")
    return {"losses": losses, "model": model}


if __name__ == "__main__":
    main()
