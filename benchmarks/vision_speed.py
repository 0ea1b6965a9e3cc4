"""CPU inference speed and peak memory: LocalVim-T against a timm ViT with the same parameter count, at growing
image sizes (the token count grows with the square of the side: linear-time scans vs quadratic attention).

    python -m benchmarks.vision_speed run --sizes '[224, 512, 1024]' --repeats 2
    python -m benchmarks.vision_speed report     # Markdown table + benchmarks/plots/vision_speed.png

Each (model, size) point runs in a fresh process: build the model, one warm-up forward, then the median of
``repeats`` timed forwards (eval mode, no autograd, batch 1). Peak memory is the process's resident-set high-water
mark during the forwards minus its size before the first one (activations and workspaces, not the weights).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "vision_speed.json"
MODELS = ("localvim_tiny", "localvim_tiny_vim_scan", "vit_same_params")
LABELS = {
    "localvim_tiny": "LocalVim-T (searched local scans, 4 per layer)",
    "localvim_tiny_vim_scan": "LocalVim-T with Vim's scan (h, h_flip)",
    "vit_same_params": "timm ViT, dim 192, same parameter count",
}


def build(name: str, size: int):
    import timm
    import torch

    import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)

    if name == "localvim_tiny":
        return timm.create_model("localvim_tiny", img_size=size)
    if name == "localvim_tiny_vim_scan":
        return timm.create_model("localvim_tiny", img_size=size, directions=[["h", "h_flip"]] * 20)
    target = sum(p.numel() for p in timm.create_model("localvim_tiny").parameters())
    with torch.device("meta"):  # the depth whose parameter count is closest to LocalVim-T's
        depth = min(
            range(8, 30),
            key=lambda d: abs(sum(p.numel() for p in timm.create_model("vit_tiny_patch16_224", depth=d).parameters())
                              - target),
        )  # fmt: skip
    return timm.create_model("vit_tiny_patch16_224", depth=depth, img_size=size, dynamic_img_size=True)


def measure(name: str, size: int, repeats: int) -> dict:
    """One point, in this process: images/s (median of ``repeats``) and peak extra memory (MiB)."""
    import resource
    import statistics
    import time

    import torch

    model = build(name, size).eval()
    x = torch.randn(1, 3, size, size)
    page = resource.getpagesize()
    before = int(Path("/proc/self/statm").read_text().split()[1]) * page
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": name,
        "size": size,
        "tokens": (size // 16) ** 2,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": statistics.median(times),
        "images_per_s": 1.0 / statistics.median(times),
        "peak_mib": max(0, peak - before) / 2**20,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def point(name: str, size: int, repeats: int = 3) -> None:
    """Measure one point and print it as JSON (the child process of `run`)."""
    print(json.dumps(measure(name, size, repeats)))


def run(sizes: list[int] | None = None, repeats: int = 3, out: Path = RESULTS) -> None:
    """Measure every model at every size, each in a fresh process, side by side in this one run; write ``out``."""
    sizes = sizes or [224, 512, 1024]
    rows = []
    for size in sizes:
        for name in MODELS:
            argv = [sys.executable, "-m", "benchmarks.vision_speed", "point", "--name", name, "--size", str(size),
                    "--repeats", str(repeats)]  # fmt: skip
            child = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT.parent)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


def report(results: Path = RESULTS, plot: Path = ROOT / "plots" / "vision_speed.png") -> None:
    """The Markdown table (with ratios to the ViT at each size, from the same run) and the plot."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(Path(results).read_text())
    vit = {r["size"]: r for r in rows if r["model"] == "vit_same_params"}
    print("| model | params | image | tokens | images/s | vs ViT | peak memory (MiB) | vs ViT |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = vit[r["size"]]
        print(
            f"| {LABELS[r['model']]} | {r['params'] / 1e6:.2f}M | {r['size']} | {r['tokens']} | "
            f"{r['images_per_s']:.3g} | {r['images_per_s'] / v['images_per_s']:.2f}x | {r['peak_mib']:.0f} | "
            f"{r['peak_mib'] / max(v['peak_mib'], 1e-9):.2f}x |"
        )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in MODELS:
        points = sorted((r for r in rows if r["model"] == name), key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in points]
        axes[0].loglog(tokens, [r["seconds"] for r in points], marker="o", label=LABELS[name])
        axes[1].loglog(tokens, [r["peak_mib"] for r in points], marker="o", label=LABELS[name])
    axes[0].set_ylabel("seconds per image (batch 1)")
    axes[1].set_ylabel("peak extra memory (MiB)")
    sizes = sorted({(r["tokens"], r["size"]) for r in rows})
    for ax in axes:
        ax.set_xlabel("image side in pixels (tokens)")
        ax.set_xticks([t for t, _ in sizes], [f"{s} ({t})" for t, s in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"CPU inference, {rows[0]['threads']} thread(s), torch 2.9.1")
    fig.tight_layout()
    Path(plot).parent.mkdir(exist_ok=True)
    fig.savefig(plot, dpi=120)
    print(f"plot: {plot}")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI([point, run, report], as_positional=False)
