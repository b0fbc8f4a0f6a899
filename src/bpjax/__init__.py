"""bpjax: neural networks and the backpropagation algorithm, exactly as the paper writes it.

The public API, by the paper's ideas (the README has a tour, each module the details):

* the model (§1.1): :class:`Network`, :class:`Layer`, :class:`Activation`, :func:`init`;
* the forward pass and loss (1): :func:`forward`, :func:`forward_trace`, :func:`loss`;
* other losses (``loss=`` everywhere), each with its hand-written derivative: :class:`Loss`,
  :func:`register_loss`, :func:`get_loss`, :func:`available_losses` (``"squared"``,
  ``"binary_cross_entropy"``, ``"softmax_cross_entropy"``); classification:
  :func:`predict_proba`, :func:`predict`, :func:`accuracy`;
* the hand-written backward pass, equations (2)-(4): :func:`backprop`,
  :func:`value_and_backprop`, :func:`per_example_backprop`, :func:`deltas`;
* the network inside any JAX program: :func:`apply`, the value of :func:`forward` whose
  ``jax.grad`` (any loss, ``∂ℓ/∂θ`` and ``∂ℓ/∂x``) is the hand-written backward pass;
* Algorithm 2 as written: :func:`recursive_grad`, :func:`recursive_dphi_dw`;
* the derivatives ``∂φ_θ(x_i)/∂w`` themselves, per sample: :func:`jacobian` (the paper's
  recursion upward, or one backward sweep per output); per-sample gradient norms without the
  per-sample gradients, :func:`ghost_norms` (→ :class:`GhostNorms`), and DP-SGD's clipped sum
  :func:`clipped_grad_sum` (→ :class:`ClippedGradSum`);
* checking it all: :func:`check_gradients`, :func:`check_activation`, :func:`check_loss`;
* the chain rule as a sum over paths (§1.3.1, figure 2): :func:`chain_rule_paths`,
  :func:`weight_paths`, and :func:`draw_network` (needs matplotlib);
* one sample's forward and backward pass and one step of Algorithm 1, every ``a``, ``φ``,
  ``δ`` and ``∂L/∂w`` in the paper's notation: :func:`explain` (→ :class:`Explanation`);
* Algorithm 1, training: :func:`fit` (→ :class:`FitResult`), :func:`sweep` (many models at
  once), clamped weights :func:`frozen_mask`, :func:`clamp`; :class:`DivergenceWarning` when
  the loss stops being finite; second order for the squared
  loss: :func:`levenberg_marquardt` (MATLAB's trainlm; its state :class:`LMState`);
* checkpoints: :func:`save`, :func:`load` (→ :class:`Checkpoint`);
* many devices and hosts (:mod:`bpjax.distributed`): ``fit(..., mesh=)`` splits every batch
  over a device mesh, ``sweep(..., mesh=)`` splits the models.
"""

from bpjax.activations import (
    Activation,
    available_activations,
    get_activation,
    register_activation,
)
from bpjax.apply import apply
from bpjax.backward import backprop, deltas, per_example_backprop, value_and_backprop
from bpjax.checkpoint import Checkpoint, load, save
from bpjax.clamping import clamp, frozen_mask
from bpjax.classification import accuracy, predict, predict_proba
from bpjax.drawing import draw_network
from bpjax.explain import Explanation, explain
from bpjax.forward import Trace, forward, forward_trace
from bpjax.ghost_norms import ClippedGradSum, GhostNorms, clipped_grad_sum, ghost_norms
from bpjax.gradcheck import (
    GradCheckReport,
    GradientCheckError,
    LayerCheck,
    check_activation,
    check_gradients,
    check_loss,
)
from bpjax.jacobian import jacobian
from bpjax.levenberg_marquardt import LMState, levenberg_marquardt
from bpjax.loop import DivergenceWarning
from bpjax.loss import loss
from bpjax.losses import Loss, available_losses, get_loss, register_loss
from bpjax.network import Layer, Network
from bpjax.params import check_params, init
from bpjax.paths import ChainPath, ChainRule, Factor, chain_rule_paths, weight_paths
from bpjax.recursive import recursive_dphi_dw, recursive_grad
from bpjax.sweep import sweep
from bpjax.training import FitResult, fit

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "ChainPath",
    "ChainRule",
    "Checkpoint",
    "ClippedGradSum",
    "DivergenceWarning",
    "Explanation",
    "Factor",
    "FitResult",
    "GhostNorms",
    "GradCheckReport",
    "GradientCheckError",
    "LMState",
    "Layer",
    "LayerCheck",
    "Loss",
    "Network",
    "Trace",
    "accuracy",
    "apply",
    "available_activations",
    "available_losses",
    "backprop",
    "chain_rule_paths",
    "check_activation",
    "check_gradients",
    "check_loss",
    "check_params",
    "clamp",
    "clipped_grad_sum",
    "deltas",
    "draw_network",
    "explain",
    "fit",
    "forward",
    "forward_trace",
    "frozen_mask",
    "get_activation",
    "get_loss",
    "ghost_norms",
    "init",
    "jacobian",
    "levenberg_marquardt",
    "load",
    "loss",
    "per_example_backprop",
    "predict",
    "predict_proba",
    "recursive_dphi_dw",
    "recursive_grad",
    "register_activation",
    "register_loss",
    "save",
    "sweep",
    "value_and_backprop",
    "weight_paths",
]
