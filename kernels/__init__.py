"""Sequence-mixing kernels: the public ops, each with a readable reference and faster backends.

Shape letters used throughout `kernels/`:

    b  batch             l  sequence length        d  channels (Mamba-1: d_inner)
    n  state size        g  groups of B/C          h  heads (SSD)        p  head dim (SSD)
    w  short conv width

Backends (see `kernels._backend`): ``reference`` (the spec, float32 accumulation), ``torch`` (fast pure
PyTorch for CPU and GPUs without Triton) and ``triton``. ``backend=None`` picks triton for CUDA tensors
when triton imports, else torch; the environment variable ``LONGSEQ_BACKEND`` overrides the choice.
"""

from longseq.kernels.causal_conv1d import causal_conv1d, causal_conv1d_update
from longseq.kernels.fftconv import fftconv
from longseq.kernels.hyena import hyena_conv
from longseq.kernels.norm import add_norm
from longseq.kernels.selective_scan import selective_scan, selective_state_update
from longseq.kernels.ssd import ssd_scan

__all__ = [
    "add_norm",
    "causal_conv1d",
    "causal_conv1d_update",
    "fftconv",
    "hyena_conv",
    "selective_scan",
    "selective_state_update",
    "ssd_scan",
]
