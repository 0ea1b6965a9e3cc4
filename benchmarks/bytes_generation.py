"""Byte generation speed: cached per-stage states vs recomputing the whole forward per byte, and the `mblm` package.

One model shape for all three (MBLM's CPU measurement in the anchors: hidden [256, 128], layers [2, 2], a Mamba
global stage and a transformer local stage; seq_lens [1024, 8] so that an 8K prefix fits). For each prefix
length: ours cached (prefill, then time ``--new`` steps), ours recomputed (one full forward over prefix + 1
byte, which is what generating one byte costs without a cache), and, with ``--peer-site``, the released `mblm`
package's ``generate`` (which recomputes) in a subprocess. Medians over ``--repeats``; ratios from this one run.

    .venv/bin/python -m benchmarks.bytes_generation --peer-site /path/to/site-packages \
        --plot benchmarks/plots/bytes_generation.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

import torch

from longseq.bytes.models import MBLM, MBLMConfig, StageConfig

SEQ_LENS = (1024, 8)
HIDDEN = (256, 128)
LAYERS = (2, 2)
HEADS, HEAD_DIM, FF_MULT, D_STATE = 4, 32, 2, 16


def our_model() -> MBLM:
    config = MBLMConfig(
        stages=[
            StageConfig(mixer="mamba", d_model=HIDDEN[0], n_layers=LAYERS[0], seq_len=SEQ_LENS[0], mlp_ratio=0.0,
                        d_state=D_STATE),
            StageConfig(d_model=HIDDEN[1], n_layers=LAYERS[1], seq_len=SEQ_LENS[1], num_heads=HEADS,
                        mlp_ratio=FF_MULT),
        ]
    )  # fmt: skip
    return MBLM(config).eval()


def time_ours(model: MBLM, prefix: int, new: int, repeats: int) -> tuple[float, float]:
    """(cached seconds per byte, recomputed seconds per byte), medians."""
    ids = torch.randint(0, 256, (1, prefix + new))
    decoder = model.decoder
    cached, full = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            state = decoder.init_state()
            decoder.prefill(ids[:, :prefix], state)
            start = time.perf_counter()
            for t in range(prefix, prefix + new):
                decoder.step(ids[:, t], state)
            cached.append((time.perf_counter() - start) / new)
            start = time.perf_counter()
            decoder(ids[:, : prefix + 1])
            full.append(time.perf_counter() - start)
    return statistics.median(cached), statistics.median(full)


PEER = """
import json, statistics, sys, time, warnings
import torch
warnings.simplefilter("ignore")
from mblm import MBLM, MBLMModelConfig
from mblm.model.mamba import MambaBlock
from mblm.model.transformer import TransformerBlock
torch.set_num_threads({threads})
config = MBLMModelConfig(
    num_tokens=256, pad_token_id=0, hidden_dims={hidden}, num_layers={layers}, seq_lens={seq_lens},
    train_checkpoint_chunks=None,
    block=[MambaBlock(d_state={d_state}, d_conv=4, expand=2, headdim=64),
           TransformerBlock(attn_head_dims={head_dim}, attn_num_heads={heads}, attn_use_rot_embs=True,
                            ff_multiplier={ff_mult})],
)
model = MBLM(config).eval()
out = {{"params": sum(p.numel() for p in model.parameters())}}
for prefix in {prefixes}:
    runs = []
    for _ in range({repeats}):
        prime = torch.randint(1, 256, (prefix,))
        start = time.perf_counter()
        model.generate(prime, num_tokens_to_generate={peer_new}, enable_progress=False)
        runs.append((time.perf_counter() - start) / {peer_new})
    out[str(prefix)] = statistics.median(runs)
print(json.dumps(out))
"""


def time_peer(site: str, prefixes: list[int], repeats: int, peer_new: int) -> dict:
    code = PEER.format(
        threads=torch.get_num_threads(), hidden=list(HIDDEN), layers=list(LAYERS), seq_lens=list(SEQ_LENS),
        d_state=D_STATE, head_dim=HEAD_DIM, heads=HEADS, ff_mult=FF_MULT, prefixes=prefixes, repeats=repeats,
        peer_new=peer_new,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": site}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the mblm measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, nargs="+", default=[256, 2048, 8000])
    parser.add_argument("--new", type=int, default=64, help="cached bytes timed per repeat")
    parser.add_argument("--peer-new", type=int, default=3, help="bytes the mblm package generates per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-site", help="a directory where mblm (and its deps) are installed")
    parser.add_argument("--plot", help="write a PNG of milliseconds per byte against the prefix length")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = our_model()
    params = sum(p.numel() for p in model.parameters())
    peer = time_peer(args.peer_site, args.prefixes, args.repeats, args.peer_new) if args.peer_site else {}
    print(f"model: hidden {list(HIDDEN)}, layers {list(LAYERS)}, seq_lens {list(SEQ_LENS)}, Mamba + transformer; "
          f"ours {params / 1e6:.2f} M params" + (f", mblm {peer['params'] / 1e6:.2f} M" if peer else "")
          + f"; torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    header = "| prefix | ours cached (ms/byte) | ours recomputed (ms/byte) | recomputed / cached |"
    if peer:
        header += " mblm 0.4.2 (ms/byte) | mblm / ours cached |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    curves: dict[str, list[float]] = {"ours, cached": [], "ours, recomputed": []}
    for prefix in args.prefixes:
        cached, full = time_ours(model, prefix, args.new, args.repeats)
        curves["ours, cached"].append(cached * 1e3)
        curves["ours, recomputed"].append(full * 1e3)
        row = f"| {prefix} | {cached * 1e3:.2f} | {full * 1e3:.1f} | {full / cached:.0f}x |"
        if peer:
            row += f" {peer[str(prefix)] * 1e3:.1f} | {peer[str(prefix)] / cached:.0f}x |"
        print(row, flush=True)
    if peer:
        curves["mblm 0.4.2 generate"] = [peer[str(prefix)] * 1e3 for prefix in args.prefixes]
    if args.plot:
        plot(args.plot, args.prefixes, curves)


def plot(path: str, prefixes: list[int], curves: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, values in curves.items():
        ax.plot(prefixes, values, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("prefix length (bytes)")
    ax.set_ylabel("milliseconds per generated byte")
    ax.set_title("Byte generation, 2-core CPU (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
