"""Short causal depthwise convolution: drop-ins for the `causal_conv1d` package's `causal_conv1d_fn` and
`causal_conv1d_update`."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.causal_conv1d.reference import causal_conv1d_ref, causal_conv1d_update_ref

__all__ = ["causal_conv1d", "causal_conv1d_ref", "causal_conv1d_update", "causal_conv1d_update_ref"]


def _check_activation(activation: str | None) -> None:
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None, 'silu' or 'swish'; got {activation!r}")


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    activation: str | None = None,
    *,
    backend: str | None = None,
):
    """Causal depthwise conv over the last axis, optionally continuing from ``initial_states``.

    Args:
        x: (b, d, l). weight: (d, w). bias: (d,). initial_states: (b, d, w - 1).
        activation: None, "silu" or "swish".

    Returns:
        y (b, d, l); with ``return_final_states`` also the last w - 1 inputs (b, d, w - 1) for `causal_conv1d_update`.
    """
    _check_activation(activation)
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"expected x (b, d, l) and weight (d, w); got {tuple(x.shape)} and {tuple(weight.shape)}")
    b, d, _ = x.shape
    w = weight.shape[1]
    if bias is not None and bias.shape != (d,):
        raise ValueError(f"bias must be (d={d},); got {tuple(bias.shape)}")
    if initial_states is not None and initial_states.shape != (b, d, w - 1):
        raise ValueError(f"initial_states must be (b, d, w - 1) = {(b, d, w - 1)}; got {tuple(initial_states.shape)}")
    if _backend.choose(x, backend) == "triton":
        from longseq.kernels.causal_conv1d.autograd import causal_conv1d_triton

        return causal_conv1d_triton(x, weight, bias, initial_states, return_final_states, activation)
    return causal_conv1d_ref(x, weight, bias, initial_states, return_final_states, activation)


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Decode step: ``conv_state`` (b, d, k >= w - 1) holds the last inputs and is updated in place.

    Args:
        x: (b, d) or (b, d, s). weight: (d, w). bias: (d,).

    Returns:
        y with x's shape.
    """
    _check_activation(activation)
    if x.dim() not in (2, 3) or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"expected x (b, d) or (b, d, s) and weight (d, w); got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be (d={weight.shape[0]},); got {tuple(bias.shape)}")
    if conv_state.dim() != 3 or conv_state.shape[-1] < weight.shape[1] - 1 or conv_state.shape[:2] != x.shape[:2]:
        raise ValueError(f"conv_state must be (b, d, k >= w - 1); got {tuple(conv_state.shape)} for x {tuple(x.shape)}")
    choice = _backend.choose(x, backend)
    if choice == "triton":
        from longseq.kernels.causal_conv1d.autograd import causal_conv1d_update_triton

        return causal_conv1d_update_triton(x, conv_state, weight, bias, activation)
    if choice == "torch":
        from longseq.kernels.causal_conv1d.torch_conv import causal_conv1d_update_torch

        return causal_conv1d_update_torch(x, conv_state, weight, bias, activation)
    return causal_conv1d_update_ref(x, conv_state, weight, bias, activation)
