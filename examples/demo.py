"""`make demo`: the main job of each part of the toolkit, one after another, on bundled data (CPU, minutes).

    python -m examples.demo                  # every step
    python -m examples.demo --only core      # one step
    python -m examples.demo --out out/demo   # where the steps write (one folder per step)

A step is a module with ``run(out_dir: pathlib.Path) -> None``; a domain adds ``examples/demo_<domain>.py`` and
one line to `STEPS`.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

STEPS = {
    "core": "examples.demo_core",
    "bytes": "examples.demo_bytes",
    "btb3d": "examples.demo_btb3d",
    "genomics": "examples.demo_genomics",
    "speech": "examples.demo_speech",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(STEPS), help="run one step")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(STEPS)
    timings = []
    for name in names:
        print(f"\n=== demo step: {name} ===", flush=True)
        start = time.perf_counter()
        importlib.import_module(STEPS[name]).run(args.out / name)
        timings.append((name, time.perf_counter() - start))
    print("\n=== demo finished ===")
    for name, seconds in timings:
        print(f"{name:>12}: {seconds:6.1f} s, outputs in {args.out / name}")


if __name__ == "__main__":
    main()
