"""One training step of a small three-stage MBLM at a 1,048,576-byte context on the CPU: time and peak memory.

The ``mblm-1m`` preset (seq_lens 8192 x 16 x 8, a Mamba global stage and two transformer stages; stages 2 and 3
under activation checkpointing in 8 and 32 chunks, as MBLM's ``train_checkpoint_chunks``). One window of
1,048,576 bytes (1,048,575 inputs, each predicting the next byte): forward, backward and an AdamW step. Peak
memory is the process's maximum resident set size.

    .venv/bin/python -m benchmarks.bytes_1m_step [--data FILE_OR_DIR] [--no-checkpointing]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from longseq import from_pretrained
from longseq.bytes.data.files import list_files, read_bytes


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="bytes to train on (default: random bytes)")
    parser.add_argument("--steps", type=int, default=2, help="steps to time (the first also warms up)")
    parser.add_argument("--no-checkpointing", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = from_pretrained("mblm-1m").train()
    if args.no_checkpointing:
        model.decoder.checkpoint_chunks = [0] * model.decoder.num_stages
    context = model.context
    if args.data:
        data = read_bytes(list_files(args.data))[:context].long()
        if data.numel() < context:
            raise SystemExit(f"{args.data} holds {data.numel()} bytes, fewer than the context of {context}")
    else:
        data = torch.randint(0, 256, (context,))
    ids = data[None]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    print(f"mblm-1m: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, context {context:,} bytes, "
          f"checkpoint chunks {model.decoder.checkpoint_chunks[1:]}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; resident before the step {peak_gb():.2f} GB")  # fmt: skip
    times = []
    for step in range(args.steps):
        start = time.perf_counter()
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[0, 1:])
        del logits
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        print(f"step {step}: loss {float(loss):.4f} ({float(loss) / 0.693147:.3f} bits/byte), "
              f"{times[-1]:.1f} s, peak resident {peak_gb():.2f} GB", flush=True)  # fmt: skip
    print(f"| 1,048,576 bytes | {min(times):.1f} s per step (best of {args.steps}) | peak {peak_gb():.2f} GB |")


if __name__ == "__main__":
    main()
