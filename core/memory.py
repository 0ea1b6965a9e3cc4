"""Process memory for inference commands: keep freed activations in the heap for the next batch."""

from __future__ import annotations

import ctypes
import ctypes.util
import os


def reuse_freed_memory() -> None:
    """Keep every freed activation buffer in glibc's heap for the next batch (or image) to reuse, so batches run at
    the model's speed and memory stays flat however many there are. Called by the batch inference commands
    (`dna embed`, `predict`, `score`, `vision eval-classifier`) before their first tensor.

    By default glibc serves buffers above its mmap threshold (at most 32 MiB: batch 16 of HyenaDNA tiny-1k makes
    33.6 MB MLP activations) as fresh mappings whose every 4 KiB page faults in on first touch, and returns heap
    memory above 128 KiB at the top at each free: the model ran 1.2-1.5x slower in `dna embed` than alone, most
    of the difference in system time, and page faults serialise threads on the kernel's locks. With no mmaps and
    a 1 GiB trim threshold each batch reuses the last one's memory (4.9 Mbp of E. coli, HyenaDNA tiny-1k: 86 k
    faults instead of 1.6 M, peak RSS 721 MiB as for 1 Mbp; benchmarks/RESULTS.md). PyTorch's 2 MiB pages for
    tensors of 2 MiB and more (read at the first allocation, so the user can still say 0) keep the heap's own
    first touches few. Not glibc (macOS, musl): nothing to do.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-4, 0)  # M_MMAP_MAX = 0: large buffers from the heap too (glibc still mmaps if brk fails)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD = 1 GiB: freed memory stays for the next batch
