"""Parity of converted mblm / MEGABYTE-pytorch checkpoints with the packages' own outputs (the fixtures).

For each fixture directory (a checkpoint in the package's layout, its constructor arguments and the package's
outputs, see its README), loads it with `longseq.from_pretrained` and prints the largest absolute differences
from the package: logits on a whole context and on a ragged padded batch, the loss, byte 0's prediction, the
empty prompt's prediction, the same in float64 against the package's float64 run, and whether cached greedy
generation reproduces the package's (uncached) greedy output.

With ``--packages`` (mblm and MEGABYTE-pytorch installed), also the random models of the slow cross-check
(`tests/bytes/test_package_parity.py`, whose builders it reuses): the same differences, per shape.

    .venv/bin/python -m benchmarks.bytes_parity tests/fixtures/mblm_a tests/fixtures/megabyte_a --packages
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from longseq import from_pretrained


def figures(directory: Path) -> dict[str, float | bool]:
    e = load_file(directory / "expected.safetensors")
    model = from_pretrained(directory)
    diff = lambda a, b: float((a.double() - b.double()).abs().max())  # noqa: E731
    out: dict[str, float | bool] = {}
    with torch.no_grad():
        for length in ("full", "short"):
            ids = e[f"input_ids_{length}"]
            out[f"logits {length}"] = diff(model(ids), e[f"logits_{length}"])
            out[f"loss {length}"] = diff(model.loss(ids), e[f"loss_{length}"])
        out["byte 0"] = diff(model.byte_logits(e["input_ids_full"])[:, 0], e["start_logits"])
        empty = torch.zeros(2, 0, dtype=torch.long)
        out["empty prompt"] = diff(model.decoder.prefill(empty, model.decoder.init_state()), e["logits_empty"][:, 0])
        prompt, greedy = e["greedy_prompt"], e["greedy_output"]
        out["greedy equal"] = torch.equal(model.generate(prompt, greedy.shape[1] - prompt.shape[1]), greedy)
        wide = model.double()
        out["logits full, float64"] = diff(wide(e["input_ids_full"]), e["logits_full_f64"])
        out["loss full, float64"] = diff(wide.loss(e["input_ids_full"]), e["loss_full_f64"])
    return out


def package_figures() -> dict[str, dict[str, float]]:
    """The slow cross-check's random models: largest differences from the package, per shape."""
    from tests.bytes import test_package_parity as parity

    builders = [(f"mblm {case}", parity.mblm_pair, case) for case in parity.MBLM_CASES]
    builders += [(f"MEGABYTE-pytorch {case}", parity.megabyte_pair, case) for case in parity.MEGABYTE_SHAPES]
    rows = {}
    for name, build, case in builders:
        with tempfile.TemporaryDirectory() as directory:
            _, ours, logits, loss, ids = build(case, Path(directory))
            rows[f"{name} ({_count(ours):,} params)"] = parity.differences(ours, logits, loss, ids)
    return rows


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def table(title: str, rows: dict[str, dict]) -> None:
    names = list(next(iter(rows.values())))
    print(f"| {title} | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    for key, row in rows.items():
        cells = [("yes" if v else "NO") if isinstance(v, bool) else f"{v:.1e}" for v in row.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="+", type=Path)
    parser.add_argument("--packages", action="store_true", help="also the slow cross-check's random models")
    args = parser.parse_args()
    torch.manual_seed(0)
    table("fixture", {directory.name: figures(directory) for directory in args.fixtures})
    if args.packages:
        print()
        table("random model", package_figures())


if __name__ == "__main__":
    main()
