"""Every Triton kernel compiles for an H100 (sm_90a) through Triton's code generator and its bundled ptxas, on
the CPU. The interpreter that runs the other kernel tests never generates code, so a kernel can pass them all
and still fail to compile on a GPU (as the causal conv's backward with initial states once did); this also
fails on register spills (above a few words per thread, `kernels._sm90.SPILL_TOLERANCE`) and on blocks that
need more shared memory than an H100 has.

The default run compiles each kernel once, as the public ops launch it with every option on; the slow run
compiles every flag combination, dtype and block-changing size, in every autotune config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from longseq.kernels._testing import has_triton

pytestmark = pytest.mark.skipif(not has_triton(), reason="triton is not installed")

KERNELS = {
    "_conv_fwd_kernel",
    "_conv_bwd_kernel",
    "_conv_update_kernel",
    "_pre_kernel",
    "_post_kernel",
    "_add_norm_fwd_kernel",
    "_add_norm_bwd_kernel",
    "_scan_fwd_kernel",
    "_scan_bwd_kernel",
    "_state_update_kernel",
    "_chunk_state_kernel",
    "_state_passing_kernel",
    "_chunk_scan_kernel",
    "_dda_intra_kernel",
}


def compile_for_sm90(tmp_path, *flags: str, timeout: int) -> dict:
    """Run the compile check in a fresh process without TRITON_INTERPRET (the interpreter replaces the kernels
    when they are defined). Triton's on-disk cache makes a second run read the compiled kernels back."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "sm90.json"
    proc = subprocess.run(
        [sys.executable, "-m", "longseq.kernels._sm90", "--json", str(out), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if not out.exists():
        raise AssertionError(f"the compile check did not finish (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def check(report: dict) -> None:
    failures = [f"{f['case']}: {f['error'][-1500:]}" for f in report["failures"]]
    assert not failures, "kernels that do not compile for sm_90a:\n" + "\n".join(failures)
    problems = [
        f"{c['case']}: {c['kernel']} {c['constexprs']} num_warps={c['num_warps']}: {'; '.join(c['problems'])}"
        for c in report["compiled"]
        if c["problems"]
    ]
    assert not problems, "compiled kernels that spill or do not fit:\n" + "\n".join(problems)


def test_every_kernel_compiles_for_sm90_without_spills(tmp_path):
    report = compile_for_sm90(tmp_path, timeout=300)
    check(report)
    assert {c["kernel"] for c in report["compiled"]} == KERNELS


@pytest.mark.slow
def test_every_variant_and_autotune_config_compiles_for_sm90_without_spills(tmp_path):
    report = compile_for_sm90(tmp_path, "--all", timeout=3000)
    check(report)
    assert {c["kernel"] for c in report["compiled"]} == KERNELS
    configs = {c["kernel"]: set() for c in report["compiled"]}
    for c in report["compiled"]:
        configs[c["kernel"]].add((json.dumps(c["constexprs"], sort_keys=True), c["num_warps"]))
    assert len(configs["_chunk_scan_kernel"]) > 4  # several autotune configs of several variants were compiled
