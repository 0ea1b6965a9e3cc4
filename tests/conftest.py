"""Shared test set-up: fresh random inputs each run (seed printed on failure), gpu tests skipped without CUDA,
and NaN-poisoned `torch.empty` so a kernel that leaves part of its output unwritten fails."""

from __future__ import annotations

import os
import random

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Without CUDA, the kernel tests run Triton kernels on the CPU through the interpreter. Triton reads this when a
# kernel is defined, and libraries (torch._dynamo) may import triton early, so it is set here, first. Only
# explicit backend="triton" calls use it; automatic backend choice on the CPU is unaffected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_seed(request):
    """A new seed per test (fresh inputs each run), reported when the test fails."""
    seed = int(os.environ.get("LONGSEQ_TEST_SEED", random.randrange(2**31)))
    torch.manual_seed(seed)
    random.seed(seed)
    yield seed
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(f"\nreproduce with LONGSEQ_TEST_SEED={seed}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def nan_poison(monkeypatch):
    """Make torch.empty / empty_like return NaN-filled tensors for the duration of a test."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    def empty_like(*args, **kwargs):
        t = real_empty_like(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", empty_like)
