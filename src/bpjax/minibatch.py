"""The gradient-descent family of Algorithm 1: one epoch of steps ``w ← w − η G_B``.

Every step, whatever the batch size ``B``, follows the gradient of its batch's share of loss (1),
``G_B = (1/N) Σ_{i∈B} ∂L/∂w(x_i)`` (see :mod:`bpjax.training`): ``B = 1`` with the plain step is
Algorithm 1 itself (:mod:`bpjax.algorithm1`), any other ``B`` or an optax optimizer steps along
``G_B`` computed by the hand-written backward pass. :func:`run` is the compiled loop of
:func:`bpjax.fit` and :func:`bpjax.sweep`: :func:`one_epoch` inside :func:`bpjax.loop.run_epochs`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from bpjax.algorithm1 import TINY, algorithm1_epoch, sample_gradient
from bpjax.backward import delta_rule, weight_gradients
from bpjax.clamping import apply_update
from bpjax.distributed import shard_batches
from bpjax.forward import propagate
from bpjax.loop import run_epochs

__all__ = ["epoch_data", "one_epoch", "run"]


def _batch_gradient(net, params, X_B, Y_B, m_B, N):
    """``G_B = ∂L_B/∂w = (1/N) Σ_{i∈B} ∂L/∂w(x_i)`` for a batch (``m_B`` masks padding)."""
    tr = propagate(net, params, X_B)
    r = tr.phi[-1] - Y_B
    g = r / N if m_B is None else r * (m_B[:, None] / N)  # ∂L_B/∂φ^L
    return weight_gradients(net, tr, delta_rule(net, params, tr, g, bias_row=True))


def _descend(optimizer, eta, masks, params, opt_state, G):
    """``w ← w − η G`` (optimizer None), or ``w ← w + η u`` with the optimizer's ``u``."""
    if optimizer is None:
        steps = jax.tree.map(lambda g: -eta * g, G)
    else:
        u, opt_state = optimizer.update(G, opt_state, params)
        steps = jax.tree.map(lambda v, w: (eta * v).astype(w.dtype), u, params)
    if masks is None:
        masks = (None,) * len(params)
    return tuple(apply_update(w, s, m) for w, s, m in zip(params, steps, masks)), opt_state


def epoch_data(config, data, epoch):
    """The epoch's samples in order: shuffled with ``fold_in(key, epoch)`` if asked, padded to
    ``steps × B`` with masked samples when ``B`` does not divide ``N``, then batched."""
    X, Y = data.X, data.Y
    if config.shuffle:
        perm = jax.random.permutation(jax.random.fold_in(data.key, epoch), config.N)
        X, Y = X[perm], Y[perm]
    if config.batch == 1:
        return X, Y, None
    pad = config.steps * config.batch - config.N
    m = None
    if pad:
        m = jnp.concatenate([jnp.ones(config.N, X.dtype), jnp.zeros(pad, X.dtype)])
        X = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)])
        Y = jnp.concatenate([Y, jnp.zeros((pad, Y.shape[1]), Y.dtype)])
        m = m.reshape(config.steps, config.batch)
    X = X.reshape(config.steps, config.batch, X.shape[-1])
    Y = Y.reshape(config.steps, config.batch, Y.shape[-1])
    if config.batch_sharding is not None:  # data parallel: every batch split over the devices
        X, Y, m = shard_batches(config.batch_sharding, X, Y, m)
    return X, Y, m


def one_epoch(net, optimizer, config, data, hyper, params, opt_state, epoch):
    """One epoch: ``⌈N/B⌉`` steps, each on its batch's share of the gradient."""
    X, Y, m = epoch_data(config, data, epoch)
    N = config.N
    masks = data.trainable if config.masked else None
    if config.batch == 1 and optimizer is None:  # Algorithm 1: the fused per-sample step
        return algorithm1_epoch(net, hyper.eta / N, masks, params, X, Y), opt_state

    def step(carry, batch):
        params, opt_state = carry
        if config.batch == 1:
            G = sample_gradient(net, params, batch[0], batch[1], N)
        else:
            G = _batch_gradient(net, params, *batch, N)
        return _descend(optimizer, hyper.eta, masks, params, opt_state, G), None

    batches = (X, Y) if config.batch == 1 else (X, Y, m)
    unroll = 2 if config.batch == 1 and net.num_params > TINY else 1
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches, unroll=unroll)
    return params, opt_state


def run(net, optimizer, config, loop, data, hyper, n):
    """Up to ``n`` epochs of :func:`one_epoch`, with the shared stopping rules."""
    one = partial(one_epoch, net, optimizer, config, data, hyper)
    return run_epochs(net, one, config, loop, data, hyper, n)
