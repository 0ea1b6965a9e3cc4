"""Kernel tests: without CUDA, Triton kernels run on the CPU through the interpreter. The variable must be set
before triton first loads a kernel module; only explicit ``backend="triton"`` calls use it, so other packages'
tests (which pick backends automatically) are unaffected."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
