"""The SSD Triton path's errors when tl.dot runs in TF32 as on an H100, emulated on the CPU (the interpreter's
dot operands truncated to TF32's 10 mantissa bits), against the exact float32 torch backend: relative RMS
error of every output and input gradient, per seed.

    TRITON_INTERPRET=1 python -m benchmarks.ssd_tf32 --shape 1,300,2,64,128 --chunk 256 --seeds 0,1
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from longseq.kernels import ssd_scan
from longseq.kernels._testing import outputs_and_grads, ssd_inputs, tf32_dots


def relative_errors(shape: tuple[int, ...], chunk: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    inputs = ssd_inputs(*shape, initial_states=True)
    opts = {"chunk_size": chunk, "dt_softplus": True, "return_final_states": True}
    (ref_outs, ref_grads) = outputs_and_grads(ssd_scan, inputs, **opts, backend="torch")
    with tf32_dots():
        (outs, grads) = outputs_and_grads(ssd_scan, inputs, **opts, backend="triton")

    def rel(r, o):
        return float((r.double() - o.double()).norm() / r.double().norm().clamp_min(1e-30))

    errors = {f"out{i}": rel(r, o) for i, (r, o) in enumerate(zip(ref_outs, outs))}
    errors.update({f"d{k}": rel(r, grads[k]) for k, r in ref_grads.items()})
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="1,300,2,64,128", help="b,l,h,p,n")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") != "1":
        print("error: set TRITON_INTERPRET=1 (the emulation replaces the interpreter's tl.dot)", file=sys.stderr)
        return 2
    shape = tuple(int(v) for v in args.shape.split(","))
    rows = {int(seed): relative_errors(shape, args.chunk, int(seed)) for seed in args.seeds.split(",")}
    names = list(next(iter(rows.values())))
    print("| seed | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for seed, errors in rows.items():
        print(f"| {seed} | " + " | ".join(f"{errors[k]:.1e}" for k in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
