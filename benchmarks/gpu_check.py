"""The Python half of the GPU check (`benchmarks/gpu_check.sh` runs it): every model family's forward and one
training step on CUDA, the Triton kernels' errors and timings against the torch path and against mamba_ssm /
causal_conv1d when those import, and one JSON summary of it all with the pytest results.

    python -m benchmarks.gpu_check models --out DIR     # DIR/models.json
    python -m benchmarks.gpu_check kernels --out DIR    # DIR/kernels.json
    python -m benchmarks.gpu_check summary --out DIR    # DIR/gpu_check.json from the parts and DIR/pytest.xml

Each part catches its own failures and records them, so one broken model or kernel never hides the others.
``--device cpu --small`` (with TRITON_INTERPRET=1) is a smoke run of the script itself on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import torch

from longseq.kernels._testing import outputs_and_grads, selective_scan_inputs, ssd_inputs

DEVICE = "cuda"  # --device cpu for a smoke run
SMALL = False  # --small: tiny kernel shapes (the smoke run)


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _floats(output) -> list[torch.Tensor]:
    """The floating tensors of a (nested) model output."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if hasattr(output, "__dataclass_fields__"):
        output = [getattr(output, name) for name in output.__dataclass_fields__]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _floats(item)]
    return []


def _small_presets(entry) -> list[str]:
    """The family's tiny and test presets (Mamba, Mamba-2 and the hybrid for the language models), else its
    smallest one."""
    import longseq

    small = [name for name in entry.presets if "tiny" in name or "test" in name]
    if small or not entry.presets:
        return small
    sizes = {}
    for name in entry.presets:
        with torch.device("meta"):
            sizes[name] = sum(p.numel() for p in longseq.from_pretrained(name).parameters())
    return [min(sizes, key=sizes.get)]


def check_models(save: Callable[[list[dict]], None]) -> None:
    """Per family, its tiny presets on CUDA: a forward (no grad), then one AdamW step on the mean square of
    its floating outputs; finite outputs, loss and gradients; seconds of each (after a warm-up forward). The
    first preset of every family goes first, so that a time cap cuts extra presets, not families; ``save``
    gets the results after each model."""
    from longseq.core.registry import INDEX

    results: list[dict] = []
    plan = [(entry, _small_presets(entry)) for entry in INDEX]
    for entry, names in plan:
        if not names:
            results.append({"family": entry.family, "preset": None, "status": "skipped: no preset"})
    order = [(e, names[0]) for e, names in plan if names] + [(e, n) for e, names in plan for n in names[1:]]
    for entry, name in order:
        results.append(_check_model(entry, name))
        print(f"{entry.family:50s} {name:28s} {results[-1]['status'][:100]}", flush=True)
        save(results)


def _check_model(entry, name: str) -> dict:
    import longseq
    from longseq.core.registry import family

    row: dict = {"family": entry.family, "preset": name}
    try:
        torch.manual_seed(0)
        model = longseq.from_pretrained(name).to(DEVICE)
        row["parameters"] = sum(p.numel() for p in model.parameters())
        inputs = _to(family(entry).example(model), DEVICE)
        with torch.no_grad():
            model(*inputs)  # compiles and autotunes the kernels it reaches
            _sync()
            start = time.perf_counter()
            outputs = _floats(model(*inputs))
            _sync()
            row["forward_s"] = time.perf_counter() - start
        finite = all(bool(t.isfinite().all()) for t in outputs)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        start = time.perf_counter()
        loss = sum(t.float().pow(2).mean() for t in _floats(model(*inputs)))
        loss.backward()
        grads_finite = all(bool(p.grad.isfinite().all()) for p in model.parameters() if p.grad is not None)
        optimizer.step()
        _sync()
        row["train_step_s"] = time.perf_counter() - start
        row["loss"] = float(loss.detach())
        ok = finite and grads_finite and bool(torch.isfinite(loss))
        row["status"] = "ok" if ok else "non-finite outputs, loss or gradients"
    except Exception as err:  # recorded: one model's failure must not hide the others
        row["status"] = f"error: {type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc()[-3000:]
    return row


# ---------------------------------------------------------------------------------------------------------------
# Kernels: errors and timings at Mamba / Mamba-2 sizes.


def _peers() -> dict[str, Callable | None]:
    found: dict[str, Callable | None] = {}
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        found["selective_scan"] = selective_scan_fn
    except Exception:
        found["selective_scan"] = None
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        found["ssd_scan"] = mamba_chunk_scan_combined
    except Exception:
        found["ssd_scan"] = None
    try:
        from causal_conv1d import causal_conv1d_fn

        found["causal_conv1d"] = causal_conv1d_fn
    except Exception:
        found["causal_conv1d"] = None
    return found


def _rel(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return float((ref - out).norm() / ref.norm().clamp_min(1e-30))


def _errors(ref, out) -> dict[str, float]:
    (ref_outs, ref_grads), (outs, grads) = ref, out
    errors = {f"out{i}": _rel(r, o) for i, (r, o) in enumerate(zip(ref_outs, outs))}
    errors.update({f"d{k}": _rel(r, grads[k]) for k, r in ref_grads.items() if k in grads})
    return errors


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # compiles / autotunes
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fwd_bwd(fn, inputs: dict, **options) -> Callable[[], None]:
    leaves = {
        k: (v.detach().clone().requires_grad_(True) if v is not None and v.is_floating_point() else v)
        for k, v in inputs.items()
    }

    def run():
        out = fn(**leaves, **options)
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()

    return run


def _cases() -> list[tuple[str, str, Callable[[torch.dtype], dict], Callable, Callable, dict]]:
    """(op, shape, inputs by dtype, our op, the peer's adapter, options)."""
    from longseq.kernels import causal_conv1d, selective_scan, ssd_scan

    b, d, l = (1, 32, 70) if SMALL else (2, 1536, 4096)
    h, p, n = (2, 16, 32) if SMALL else (24, 64, 128)

    def scan_inputs(dtype):
        return selective_scan_inputs(b, d, l, 16, dtype=dtype, device=DEVICE)

    def ssd_in(dtype):
        return ssd_inputs(b, l, h, p, n, dtype=dtype, device=DEVICE)

    def conv_inputs(dtype):
        return {
            "x": torch.randn(b, d, l, device=DEVICE, dtype=dtype),
            "weight": torch.randn(d, 4, device=DEVICE, dtype=dtype),
            "bias": torch.randn(d, device=DEVICE, dtype=dtype),
        }

    def drop(*names):
        return lambda peer: lambda **kw: peer(**{k: v for k, v in kw.items() if k not in names})

    return [
        ("selective_scan", f"b={b} d={d} l={l} n=16", scan_inputs, selective_scan, drop("initial_state", "backend"),
         {"delta_softplus": True}),
        ("ssd_scan", f"b={b} l={l} h={h} p={p} n={n} T=256", ssd_in, ssd_scan, drop("backend"),
         {"chunk_size": 256, "dt_softplus": True}),
        ("causal_conv1d", f"b={b} d={d} l={l} w=4 silu", conv_inputs, causal_conv1d, drop("backend"),
         {"activation": "silu"}),
    ]  # fmt: skip


def check_kernels(repeats: int, save: Callable[[list[dict]], None]) -> None:
    """Per op and dtype: relative RMS errors of the Triton path (and the peer) against the torch path, outputs
    and every input gradient; median seconds of a forward + backward of each; ratios to Triton. ``save`` gets
    the results after each row."""
    peers = _peers()
    results: list[dict] = []
    for op, shape, make, ours, adapt, options in _cases():
        for dtype in (torch.float32, torch.bfloat16):
            row: dict = {"op": op, "shape": shape, "dtype": str(dtype).removeprefix("torch.")}
            try:
                torch.manual_seed(0)
                inputs = make(dtype)
                ref = outputs_and_grads(ours, inputs, **options, backend="torch")
                triton_run = outputs_and_grads(ours, inputs, **options, backend="triton")
                row["error_triton_vs_torch"] = _errors(ref, triton_run)
                seconds = {
                    "triton": _time(_fwd_bwd(ours, inputs, **options, backend="triton"), repeats),
                    "torch": _time(_fwd_bwd(ours, inputs, **options, backend="torch"), repeats),
                }
                peer = peers[op]
                if peer is not None:
                    name = "mamba_ssm" if op != "causal_conv1d" else "causal_conv1d"
                    wrapped = adapt(peer)
                    peer_inputs = {k: v for k, v in inputs.items() if k != "initial_state"}
                    row[f"error_{name}_vs_torch"] = _errors(ref, outputs_and_grads(wrapped, peer_inputs, **options))
                    seconds[name] = _time(_fwd_bwd(wrapped, peer_inputs, **options), repeats)
                else:
                    row["peer"] = "not installed"
                row["seconds_fwd_bwd"] = seconds
                row["triton_over"] = {k: seconds["triton"] / v for k, v in seconds.items() if k != "triton"}
                row["status"] = "ok"
            except Exception as err:  # recorded: one op's failure must not hide the others
                row["status"] = f"error: {type(err).__name__}: {err}"
                row["traceback"] = traceback.format_exc()[-3000:]
            print(json.dumps({k: v for k, v in row.items() if k != "traceback"}), flush=True)
            results.append(row)
            save(results)


def _pytest_results(xml_path: Path) -> dict:
    if not xml_path.exists():
        return {"status": "no junit xml (pytest did not finish?)"}
    root = ET.parse(xml_path).getroot()
    cases = list(root.iter("testcase"))
    failed = []
    for c in cases:
        bad = c.find("failure") if c.find("failure") is not None else c.find("error")
        if bad is not None:
            failed.append({"test": f"{c.get('classname')}::{c.get('name')}", "message": bad.get("message", "")[:2000]})
    skipped = sum(c.find("skipped") is not None for c in cases)
    named = [(float(c.get("time", 0)), f"{c.get('classname')}::{c.get('name')}") for c in cases]
    durations = sorted(named, reverse=True)
    return {
        "tests": len(cases),
        "passed": len(cases) - len(failed) - skipped,
        "failed": failed,
        "skipped": skipped,
        "slowest": [{"test": name, "seconds": s} for s, name in durations[:10]],
    }


def summary(out: Path) -> dict:
    import triton

    parts = {name: out / f"{name}.json" for name in ("models", "kernels")}
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "pytest_gpu": _pytest_results(out / "pytest.xml"),
    }
    for name, path in parts.items():
        report[name] = json.loads(path.read_text()) if path.exists() else "did not run or did not finish"
    models = report["models"] if isinstance(report["models"], list) else []
    kernels = report["kernels"] if isinstance(report["kernels"], list) else []
    report["ok"] = (
        isinstance(report["pytest_gpu"].get("failed"), list)
        and not report["pytest_gpu"]["failed"]
        and bool(models)
        and all(m["status"] == "ok" or m["status"].startswith("skipped") for m in models)
        and bool(kernels)
        and all(k["status"] == "ok" for k in kernels)
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["models", "kernels", "summary"])
    parser.add_argument("--out", type=Path, required=True, help="directory of the results")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run of the script")
    parser.add_argument("--small", action="store_true", help="tiny kernel shapes (with --device cpu)")
    args = parser.parse_args(argv)
    global DEVICE, SMALL
    DEVICE, SMALL = args.device, args.small
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "summary":
        report = summary(args.out)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        print(f"gpu_check: summary in {args.out / 'gpu_check.json'} (ok={report['ok']})")
        return 0 if report["ok"] else 1
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible", file=sys.stderr)
        return 2
    path = args.out / f"{args.part}.json"

    def save(results: list[dict]) -> None:  # after every row: a time cap keeps what was done
        path.write_text(json.dumps(results, indent=1))

    if args.part == "models":
        check_models(save)
    else:
        check_kernels(args.repeats, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
