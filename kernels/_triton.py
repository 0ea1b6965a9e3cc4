"""Pieces shared by the Triton launchers. Only `*/triton_kernels.py` import this module (lazily, through the
autograd wrappers), so `import kernels` never imports triton."""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from longseq.kernels._backend import interpreting


def autotune_configs(*configs: triton.Config) -> list[triton.Config]:
    """All the configurations on a GPU; only the first under the interpreter, where autotuning would need a
    GPU benchmarker (so every kernel runs under TRITON_INTERPRET=1)."""
    return list(configs[:1]) if interpreting() else list(configs)


def keep_configs(fits) -> dict:
    """``prune_configs_by`` for `triton.autotune`: the configs for which ``fits(config, launch_kwargs)`` holds
    (``launch_kwargs`` holds the constexprs of the launch, such as BLOCK_N), or else the first one. Used to
    drop the configs that spill registers or exceed shared memory at some sizes (see kernels/_sm90.py)."""

    def prune(configs, named_args, **kwargs):
        return [c for c in configs if fits(c, kwargs)] or list(configs[:1])

    return {"early_config_prune": prune}


def size_class(n: int) -> int:
    """n rounded down to a power of two (0 stays 0). Autotune keys hold the size classes of the batch and the
    length, so that the config picked at a 1-step or empty first call does not serve long inputs, while a few
    classes cover every size."""
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def on_device(x: torch.Tensor):
    """Make x's GPU current for a launch (multi-GPU); nothing on the CPU. No torch.cuda call."""
    return torch.accelerator.device_index(x.device.index) if x.is_cuda else contextlib.nullcontext()


def strides(t: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    """t's strides, or zeros for an absent optional tensor (its kernel branch is compiled out)."""
    return (0,) * ndim if t is None else tuple(t.stride())


def pow2(n: int, minimum: int = 1) -> int:
    """The block size covering n: the next power of two, at least ``minimum`` (tl.dot wants 16)."""
    return max(minimum, triton.next_power_of_2(max(1, n)))


@triton.jit
def softplus(x):
    """log(1 + exp(x)) with log1p accuracy for small exp(x) (Kahan's trick), x itself above 20 (as torch)."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(x > 20.0, x, log1p)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))
