"""Cached generation (`CausalLM.generate`: one prefill, then a recurrent / KV-cache step per token) against
recomputing the whole prefix for every token (what MBLM's and many reference generate() loops do).

    python -m benchmarks.lm_generate [--plot benchmarks/plots/lm_generate.png]

Prints, per model and prompt length, the milliseconds per new token of both loops (median over repeats,
prefill excluded from the cached figure and reported apart) and their ratio. Both loops are checked to emit
the same tokens before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from longseq.core.lm import AttentionOptions, CausalLM, LMConfig, Mamba2Options


def models() -> dict[str, CausalLM]:
    common = {"vocab_size": 256, "d_model": 256, "n_layer": 4}
    configs = {
        "mamba": LMConfig(**common),
        "mamba2": LMConfig(**common, mixer="mamba2", mamba2=Mamba2Options(d_state=64, headdim=64, chunk_size=64)),
        "mamba+swa": LMConfig(
            **common, mixer=["mamba", "swa"], attention=AttentionOptions(num_heads=4, window=256, rotary_emb_dim=32)
        ),
    }
    torch.manual_seed(0)
    return {name: CausalLM(config).eval() for name, config in configs.items()}


@torch.inference_mode()
def uncached(model: CausalLM, ids: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        ids = torch.cat([ids, model(ids)[:, -1, : model.config.vocab_size].argmax(-1, keepdim=True)], dim=1)
    return ids


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plot", default=None, help="write a PNG of ms/token against prompt length")
    args = parser.parse_args(argv)
    n = args.new_tokens
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, batch 1, {n} new tokens")
    print(f"{'model':<10} {'prompt':>6} {'prefill ms':>10} {'cached ms/tok':>13} {'recompute ms/tok':>16} {'ratio':>6}")
    rows = []
    for name, model in models().items():
        for length in args.lengths:
            ids = torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(length))
            if not torch.equal(model.generate(ids, max_new_tokens=n), uncached(model, ids, n)):
                raise SystemExit(f"{name}: cached and recomputed generation disagree at prompt length {length}")
            prefill = median_seconds(partial(model.generate, ids, max_new_tokens=1), args.repeats)
            cached = median_seconds(partial(model.generate, ids, max_new_tokens=n + 1), args.repeats)
            per_token = (cached - prefill) / n
            recompute = median_seconds(partial(uncached, model, ids, n), args.repeats) / n
            rows.append((name, length, per_token, recompute))
            print(
                f"{name:<10} {length:>6} {prefill * 1e3:>10.1f} {per_token * 1e3:>13.2f} {recompute * 1e3:>16.1f} "
                f"{recompute / per_token:>5.0f}x"
            )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == name]
            line = ax.plot([r[1] for r in mine], [r[2] * 1e3 for r in mine], "o-", label=f"{name}, cached")[0]
            ax.plot(
                [r[1] for r in mine],
                [r[3] * 1e3 for r in mine],
                "s--",
                color=line.get_color(),
                label=f"{name}, recompute",
            )
        ax.set(xscale="log", yscale="log", xlabel="prompt length (tokens)", ylabel="ms per new token")
        ax.set_title("CausalLM.generate: cached steps vs recomputing the prefix (2-core CPU)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
