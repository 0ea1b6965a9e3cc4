"""Backend choice for the public ops: one function, no registry."""

from __future__ import annotations

import functools
import os
import warnings
from typing import Literal

import torch

Backend = Literal["reference", "torch", "triton"]
BACKENDS: tuple[str, ...] = ("reference", "torch", "triton")


@functools.cache
def triton_available() -> bool:
    """Whether triton imports here. Imported lazily so `import kernels` works without triton."""
    try:
        import triton  # noqa: F401
    except Exception as err:  # triton can fail with more than ImportError (e.g. a broken driver probe)
        if torch.cuda.is_available():
            warnings.warn(f"triton does not import ({err}); kernels fall back to the torch backend", stacklevel=3)
        return False
    return True


def interpreting() -> bool:
    """True when Triton kernels run on the CPU through the interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def choose(x: torch.Tensor, backend: str | None, *, has_triton: bool = True) -> Backend:
    """Pick the backend for one call.

    The automatic choice is triton for CUDA tensors, except float64 ones (the kernels compute in float32), and
    torch otherwise.

    Args:
        x: a representative input; its device and dtype decide the automatic choice.
        backend: an explicit choice, or None for automatic (overridden by ``LONGSEQ_BACKEND``).
        has_triton: whether this op has a Triton implementation.
    """
    choice = backend or os.environ.get("LONGSEQ_BACKEND") or None
    if choice is None:
        if x.is_cuda and has_triton and x.dtype != torch.float64 and triton_available():
            return "triton"
        return "torch"
    if choice not in BACKENDS:
        raise ValueError(f"unknown kernel backend {choice!r}; expected one of {', '.join(BACKENDS)}")
    if choice == "triton":
        if not has_triton:
            raise ValueError("this op has no triton backend")
        if not (x.is_cuda or interpreting()):
            raise ValueError("the triton backend needs CUDA tensors, or TRITON_INTERPRET=1 to run on the CPU")
        if x.dtype == torch.float64:
            # the kernels compute in float32 (and SSD's tl.dot cannot mix float32 and float64 operands)
            raise ValueError("the triton backend takes float32, float16 or bfloat16; use backend='torch' for float64")
        if not triton_available():
            raise ValueError("the triton backend was requested but triton does not import")
    return choice  # type: ignore[return-value]


def up(t: torch.Tensor) -> torch.Tensor:
    """The accumulation dtype of the references: float32, or float64 for float64 inputs (tests)."""
    return t if t.dtype == torch.float64 else t.float()
