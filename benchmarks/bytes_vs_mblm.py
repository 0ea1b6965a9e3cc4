"""Side by side with the released `mblm` package: the same stage configuration trained on the same batches.

Both models: MBLM with hidden [256, 128], layers [2, 2], seq_lens [256, 8] (2 KiB context), a Mamba global stage
(mblm on a CPU falls back to mambapy's Mamba-1, as ours is Mamba-1) and a transformer local stage (4 heads of
32, rotary, MLP 2x). Both see the same windows of a corpus split by file (our split, seed 0), train with AdamW
(constant lr, clip 1.0) on every byte of each window (the first predicted from the start token, as mblm's loss
does), and are scored on the same held-out windows. Reports training throughput (median step) and bits per byte.

    .venv/bin/python -m benchmarks.bytes_vs_mblm --data CORPUS --peer-site SITE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from longseq.bytes.data.files import list_files, read_bytes, split_files
from longseq.bytes.models import MBLM, MBLMConfig, StageConfig

HIDDEN, LAYERS, SEQ_LENS = (256, 128), (2, 2), (256, 8)
HEADS, HEAD_DIM, FF_MULT, D_STATE = 4, 32, 2, 16


def our_model() -> MBLM:
    return MBLM(
        MBLMConfig(
            stages=[
                StageConfig(mixer="mamba", d_model=HIDDEN[0], n_layers=LAYERS[0], seq_len=SEQ_LENS[0],
                            mlp_ratio=0.0, d_state=D_STATE),
                StageConfig(d_model=HIDDEN[1], n_layers=LAYERS[1], seq_len=SEQ_LENS[1], num_heads=HEADS,
                            mlp_ratio=FF_MULT),
            ]
        )
    )  # fmt: skip


def train_ours(batches: torch.Tensor, evals: torch.Tensor, lr: float) -> dict:
    torch.manual_seed(0)
    model = our_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    times, losses = [], []
    for batch in batches.long():
        start = time.perf_counter()
        logits = model.byte_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    model.eval()
    with torch.inference_mode():
        bits = sum(float(model.bits(w[None].long())) for w in evals)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": statistics.median(times),
        "train_bpb": statistics.mean(losses[-20:]) / math.log(2),
        "heldout_bpb": bits / evals.numel(),
    }


PEER = """
import json, math, statistics, sys, time, warnings
import torch
warnings.simplefilter("ignore")
from mblm import MBLM, MBLMModelConfig, MBLMReturnType
from mblm.model.mamba import MambaBlock
from mblm.model.transformer import TransformerBlock
torch.set_num_threads({threads})
data = torch.load(sys.argv[1], weights_only=True)
torch.manual_seed(0)
config = MBLMModelConfig(
    num_tokens=256, pad_token_id=0, hidden_dims={hidden}, num_layers={layers}, seq_lens={seq_lens},
    train_checkpoint_chunks=None,
    block=[MambaBlock(d_state={d_state}, d_conv=4, expand=2, headdim=64),
           TransformerBlock(attn_head_dims={head_dim}, attn_num_heads={heads}, attn_use_rot_embs=True,
                            ff_multiplier={ff_mult})],
)
model = MBLM(config).train()
optimizer = torch.optim.AdamW(model.parameters(), lr={lr}, betas=(0.9, 0.95), weight_decay=0.1)
times, losses = [], []
for batch in data["batches"].long():
    start = time.perf_counter()
    loss = model(input_ids=batch, return_type=MBLMReturnType.LOSS)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    times.append(time.perf_counter() - start)
    losses.append(float(loss))
model.eval()
with torch.inference_mode():
    nats = [float(model(input_ids=w[None].long(), return_type=MBLMReturnType.LOSS)) for w in data["evals"]]
print(json.dumps({{
    "params": sum(p.numel() for p in model.parameters()),
    "step_s": statistics.median(times),
    "train_bpb": statistics.mean(losses[-20:]) / math.log(2),
    "heldout_bpb": statistics.mean(nats) / math.log(2),
}}))
"""


def train_peer(site: str, data_file: str, lr: float) -> dict:
    code = PEER.format(
        threads=torch.get_num_threads(), hidden=list(HIDDEN), layers=list(LAYERS), seq_lens=list(SEQ_LENS),
        d_state=D_STATE, head_dim=HEAD_DIM, heads=HEADS, ff_mult=FF_MULT, lr=lr,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": site}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), data_file], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"the mblm run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a corpus directory (split by file, seed 0)")
    parser.add_argument("--peer-site", required=True, help="a directory where mblm (and its deps) are installed")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-windows", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    files = list_files(args.data)
    split = split_files(files, args.data, val_fraction=0.05, test_fraction=0.05, seed=0)
    train, test = read_bytes(split["train"]), read_bytes(split["test"])
    context = math.prod(SEQ_LENS)
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, train.numel() - context, (args.steps, args.batch_size), generator=g)
    batches = torch.stack([torch.stack([train[s : s + context] for s in row]) for row in starts])
    evals = test[: args.eval_windows * context].view(-1, context)
    with tempfile.TemporaryDirectory() as tmp:
        data_file = str(Path(tmp) / "batches.pt")
        torch.save({"batches": batches, "evals": evals}, data_file)
        peer = train_peer(args.peer_site, data_file, args.lr)
    ours = train_ours(batches, evals, args.lr)
    print(
        f"{args.steps} steps of {args.batch_size} x {context} bytes, lr {args.lr}; held-out: {evals.shape[0]} "
        f"windows ({evals.numel():,} bytes); torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    columns = [
        "implementation",
        "params",
        "train bytes/s",
        "speed vs mblm",
        "train bits/byte (last 20)",
        "held-out bpb",
    ]
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, result in (("mblm 0.4.2", peer), ("ours", ours)):
        speed = args.batch_size * context / result["step_s"]
        ratio = peer["step_s"] / result["step_s"]
        print(f"| {name} | {result['params'] / 1e6:.2f} M | {speed:,.0f} | {ratio:.2f}x | {result['train_bpb']:.3f} | "
              f"{result['heldout_bpb']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
