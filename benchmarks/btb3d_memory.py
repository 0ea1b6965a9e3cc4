"""BTB3D encoding cost against the number of slices: window-tiled (as released) vs one pass over all slices.

    python -m benchmarks.btb3d_memory --plot benchmarks/plots/btb3d_memory.png

Each (slices, mode) point runs in a fresh process: peak memory is the growth of the resident set size during the
encode (ru_maxrss after it minus the RSS before it, the model and the input volume being in memory already), next
to the same figure for the volume's first 9 slices (one window: the floor any encode of that size pays);
time is the median of `repeats` encodes after one warm-up. The model is small (filters 16, multipliers
(1, 2, 2), 10-bit tokens: the quality benchmark's tokenizer) at float32 on the CPU. Also prints the token grid of
a 512x512x241 volume for the released 8x8x8 and 16x16x8 architectures (shapes traced on the meta device).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SLICES = (9, 17, 33, 65, 121, 177, 241)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def measure(slices: int, mode: str, size: int, repeats: int) -> dict:
    """One point, in this process (called through a subprocess by `main`)."""
    import torch

    from longseq.vision.btb3d.model import BTB3D, BTB3DConfig

    torch.manual_seed(0)
    model = BTB3D(
        BTB3DConfig(filters=16, channel_multipliers=(1, 2, 2), num_res_blocks=1, norm_groups=8, token_bits=10)
    ).eval()
    x = torch.rand(1, 1, slices, size, size) * 2 - 1
    tiled = mode == "tiled"
    before = _rss_kib()
    with torch.no_grad():
        model.encode(x[:, :, :9], tiled=tiled)  # one window: the floor any encode of this size pays
        one_window = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        model.encode(x, tiled=tiled)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            z = model.encode(x, tiled=tiled)
            times.append(time.perf_counter() - start)
    times.sort()
    return {
        "slices": slices,
        "mode": mode,
        "peak_mib": peak / 1024,
        "one_window_mib": one_window / 1024,
        "seconds": times[len(times) // 2],
        "latent": list(z.shape[2:]),
        "input_mib": x.numel() * 4 / 2**20,
    }


def token_grids() -> dict[str, list[int]]:
    import torch

    from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS

    grids = {}
    for name in ("btb3d-8x8x8", "btb3d-16x16x8"):
        model = BTB3D(BTB3D_PRESETS[name], device="meta").eval()
        with torch.no_grad():
            ids = model.tokenize(torch.empty(1, 1, 241, 512, 512, device="meta")).ids
        grids[name] = list(ids.shape[1:])
    return grids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, nargs="*", default=list(SLICES))
    parser.add_argument("--plot", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--point", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: slices mode
    args = parser.parse_args()
    if args.point:
        print(json.dumps(measure(int(args.point[0]), args.point[1], args.size, args.repeats)))
        return
    for name, grid in token_grids().items():
        print(f"{name}: 512x512x241 -> {'x'.join(map(str, grid))} tokens")
    rows = []
    for slices in args.slices:
        for mode in ("tiled", "untiled"):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.btb3d_memory",
                "--point",
                str(slices),
                mode,
                "--size",
                str(args.size),
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{slices:4d} slices {mode:8s} peak {r['peak_mib']:8.1f} MiB  {r['seconds']:7.2f} s  "
                f"latent {'x'.join(map(str, r['latent']))}",
                flush=True,
            )
    print(
        f"\n| slices ({args.size}x{args.size}) | input MiB | one window: peak MiB | tiled: peak MiB / s "
        "| untiled: peak MiB / s "
        "| untiled / tiled peak |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for slices in args.slices:
        t, u = (next(r for r in rows if r["slices"] == slices and r["mode"] == m) for m in ("tiled", "untiled"))
        print(
            f"| {slices} | {t['input_mib']:.0f} | {t['one_window_mib']:.0f} | "
            f"{t['peak_mib']:.0f} / {t['seconds']:.2f} | {u['peak_mib']:.0f} / {u['seconds']:.2f} | "
            f"{u['peak_mib'] / t['peak_mib']:.1f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.plot:
        plot(rows, args.plot, args.size)


def plot(rows: list[dict], path: str, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, sec) = plt.subplots(1, 2, figsize=(9, 3.4))
    for mode, style in (("tiled", "o-"), ("untiled", "s--")):
        pts = [r for r in rows if r["mode"] == mode]
        label = "window-tiled (released)" if mode == "tiled" else "one pass (untiled)"
        mem.plot([r["slices"] for r in pts], [r["peak_mib"] for r in pts], style, label=label)
        sec.plot([r["slices"] for r in pts], [r["seconds"] for r in pts], style, label=label)
    mem.set(xlabel="slices", ylabel="peak memory of the encode (MiB)", title=f"BTB3D encode, {size}x{size}")
    sec.set(xlabel="slices", ylabel="seconds (median)", title="time to encode")
    mem.legend()
    for ax in (mem, sec):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
