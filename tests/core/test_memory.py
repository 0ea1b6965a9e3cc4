"""`core.memory.reuse_freed_memory`: a freed large buffer is reused without faulting its pages in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

SCRIPT = """
import resource, sys
import torch
from longseq.core.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    reuse_freed_memory()
for _ in range(12):  # the first rounds grow the heap (small objects take the freed block's edge); then it holds
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 << 18)  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    env = {"THP_MEM_ALLOC_ENABLE": "0"}  # 4 KiB pages either way, so the counts compare
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.split()[-1])


def test_a_freed_buffer_is_reused_without_page_faults():
    default, reused = faults("default"), faults("reuse")
    assert default > 10_000  # 64 MiB in 4 KiB pages is 16,384 faults
    assert reused < 1_000, (default, reused)
