"""Compile the Triton kernels for an H100 (sm_90a) on a machine without a GPU, through Triton's own code
generator and its bundled ptxas, and report what each compiled kernel uses: registers, stack (spills) and
shared memory. The interpreter (TRITON_INTERPRET=1) never runs the code generator, so this finds what only a
GPU would: kernels that do not compile, spills, configs that do not fit in shared memory.

The kernels are compiled exactly as the launchers specialise them: each case below calls a public op's Triton
path (forward and backward) on small CPU tensors with the launch replaced by a compile, and every autotune
config that the autotuner would try is compiled. Run it as

    python -m longseq.kernels._sm90 [--all] [--json PATH]

(without TRITON_INTERPRET; `tests/kernels/test_sm90_compile.py` runs it in a subprocess). Compiled kernels
land in Triton's on-disk cache (TRITON_CACHE_DIR), so a second run only reads them back.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

# An sm_90a block may use at most this much shared memory (cudaDevAttrMaxSharedMemoryPerBlockOptin on H100).
MAX_SHARED = 232448
# Spills up to this many bytes per thread are tolerated: a few words that ptxas moves to local memory (cached
# in L1) in some flag combinations; the spills worth failing for are the hundreds of bytes of a tile that
# does not fit (up to 6.5 KB per thread here before the launch settings changed).
SPILL_TOLERANCE = 32


@dataclasses.dataclass
class Compiled:
    """One compiled kernel: the case that launched it, its constexprs and launch options, its resources."""

    case: str
    kernel: str
    constexprs: dict
    num_warps: int
    num_stages: int
    shared: int
    regs: int
    stack: int  # bytes of stack frame per thread: register spills (the kernels use no local arrays)

    def problems(self) -> list[str]:
        out = []
        if self.stack > SPILL_TOLERANCE:
            out.append(f"spills ({self.stack} B of stack per thread)")
        if self.shared > MAX_SHARED:
            out.append(f"needs {self.shared} B of shared memory > {MAX_SHARED}")
        return out


@dataclasses.dataclass
class Failure:
    case: str
    error: str


class _FakeCudaDriver:
    """Just enough of Triton's driver for the launcher to specialise and compile for sm_90a: no device."""

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


@contextlib.contextmanager
def _compile_instead_of_launch(record: Callable[[object], None], once: set[str] | None):
    """Every kernel launch inside compiles for sm_90a instead (nothing runs) and hands the compiled kernel to
    ``record``. Autotuned kernels compile every config the autotuner would try, after its pruning. With a set
    ``once``, only the first launch of each kernel (by name, across calls) compiles, in its first config."""
    from triton.runtime import driver
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    jit_run, tuner_run = JITFunction.run, Autotuner.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        if once is not None:
            if self.__name__ in once:
                return None
            once.add(self.__name__)
        kernel = jit_run(self, *args, grid=grid, warmup=True, **kwargs)
        record(kernel)
        return kernel

    def every_config(self, *args, **kwargs):
        kwargs.pop("warmup", None)
        self.nargs = dict(zip(self.arg_names, args))
        configs = self.prune_configs(kwargs)
        self.nargs = None
        for config in configs[:1] if once is not None else configs:
            self.fn.run(*args, warmup=True, **kwargs, **config.all_kwargs())

    previous = driver._active  # None unless a driver was already in use; restored as it was
    driver.set_active(_FakeCudaDriver())
    JITFunction.run, Autotuner.run = compile_only, every_config
    try:
        yield
    finally:
        JITFunction.run, Autotuner.run = jit_run, tuner_run
        driver.set_active(previous)


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _registers_and_stack(cubin: bytes) -> tuple[int, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [_tool("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+)", out)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage:\n{out}")
    return int(match.group(1)), int(match.group(2))


def _describe(case: str, kernel) -> Compiled:
    fn = kernel.src.fn
    names = fn.arg_names
    consts = {
        names[path[0]]: value
        for path, value in kernel.src.constants.items()
        if fn.params[path[0]].is_constexpr  # not the runtime arguments Triton specialised to 1 or None
    }
    regs, stack = _registers_and_stack(kernel.asm["cubin"])
    meta = kernel.metadata
    return Compiled(case, kernel.name, consts, meta.num_warps, meta.num_stages, meta.shared, regs, stack)


# ---------------------------------------------------------------------------------------------------------------
# Cases: one call of an op's Triton path, forward and backward, on small CPU tensors. The sizes that reach a
# constexpr (n, the norm width, SSD's head dim and state size) are real; the others are small.

BF16, F32 = torch.bfloat16, torch.float32


def _backward(outputs) -> None:
    outputs = [o for o in (outputs if isinstance(outputs, tuple) else (outputs,)) if o.requires_grad]
    torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])


def _leaf(*shape, dtype=F32) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype, requires_grad=True)


def conv_case(dtype, bias: bool, init: bool, silu: bool, width: int = 4, time_major: bool = False):
    def run():
        from longseq.kernels.causal_conv1d.autograd import causal_conv1d_triton

        b, d, l = 2, 64, 100
        x = _leaf(b, l, d, dtype=dtype).transpose(1, 2) if time_major else _leaf(b, d, l, dtype=dtype)
        w, bb = _leaf(d, width), (_leaf(d) if bias else None)
        h0 = _leaf(b, d, width - 1, dtype=dtype) if init else None
        _backward(causal_conv1d_triton(x, w, bb, h0, True, "silu" if silu else None))

    return run


def conv_update_case(dtype, bias: bool, silu: bool):
    def run():
        from longseq.kernels.causal_conv1d.autograd import causal_conv1d_update_triton

        b, d = 2, 64
        causal_conv1d_update_triton(
            torch.zeros(b, d, dtype=dtype), torch.zeros(b, d, 3, dtype=dtype), torch.zeros(d, 4),
            torch.zeros(d) if bias else None, "silu" if silu else None,
        )  # fmt: skip

    return run


def hyena_case(dtype, bias: bool):
    def run():
        from longseq.kernels.hyena.autograd import hyena_conv_triton

        b, d, l = 2, 32, 100
        _backward(
            hyena_conv_triton(_leaf(b, 3 * d, l, dtype=dtype), _leaf(3 * d, 3), _leaf(3 * d) if bias else None,
                              _leaf(d, l), _leaf(d))
        )  # fmt: skip

    return run


def norm_case(dtype, d: int, residual: bool, bias: bool, rms: bool, rows: int = 64):
    def run():
        from longseq.kernels.norm.autograd import add_norm_triton

        x = _leaf(rows, d, dtype=dtype)
        res = _leaf(rows, d, dtype=dtype) if residual else None
        _backward(add_norm_triton(x, res, _leaf(d), _leaf(d) if bias else None, 1e-5, rms, True))

    return run


def scan_case(dtype, n: int, flags: dict, groups: int | None = None, time_major: bool = False):
    def run():
        from longseq.kernels.selective_scan.autograd import selective_scan_triton

        b, d, l = 2, 64, 100

        def seq(*shape):
            return _leaf(b, l, *shape, dtype=dtype).movedim(1, -1) if time_major else _leaf(b, *shape, l, dtype=dtype)

        B = seq(n) if groups is None else seq(groups, n)
        C = seq(n) if groups is None else seq(groups, n)
        out = selective_scan_triton(
            seq(d), seq(d), _leaf(d, n), B, C,
            _leaf(d) if flags["D"] else None, seq(d) if flags["z"] else None,
            _leaf(d) if flags["bias"] else None, flags["softplus"], True,
            _leaf(b, d, n) if flags["h0"] else None,
        )  # fmt: skip
        _backward(out)

    return run


def state_update_case(dtype, n: int, flags: dict):
    def run():
        from longseq.kernels.selective_scan.autograd import selective_state_update_triton

        b, d, g = 2, 64, 2
        selective_state_update_triton(
            torch.zeros(b, d, n), torch.zeros(b, d, dtype=dtype), torch.zeros(b, d, dtype=dtype), torch.zeros(d, n),
            torch.zeros(b, g, n, dtype=dtype), torch.zeros(b, g, n, dtype=dtype),
            torch.zeros(d) if flags["D"] else None, torch.zeros(b, d, dtype=dtype) if flags["z"] else None,
            torch.zeros(d) if flags["bias"] else None, flags["softplus"],
        )  # fmt: skip

    return run


def ssd_case(dtype, p: int, n: int, init: bool, chunk: int = 64, groups: int = 1):
    def run():
        from longseq.kernels.ssd.autograd import ssd_scan_triton

        b, l, h = 1, 100, 2
        out = ssd_scan_triton(
            _leaf(b, l, h, p, dtype=dtype), _leaf(b, l, h, dtype=dtype), _leaf(h),
            _leaf(b, l, groups, n, dtype=dtype), _leaf(b, l, groups, n, dtype=dtype), chunk,
            _leaf(h), _leaf(b, l, h, p, dtype=dtype), _leaf(h), True,
            _leaf(b, h, p, n) if init else None, True,
        )  # fmt: skip
        _backward(out)

    return run


def _flags(names: list[str], values) -> dict:
    return dict(zip(names, values))


def cases(everything: bool) -> dict[str, Callable[[], None]]:
    """The default cases compile every kernel once, in the variant with the most code (every flag on); with
    ``everything``, every flag combination the launchers can produce, both dtypes and the sizes that change the
    blocks (n = 16 and 64; norm widths 256, 2560 and 5120)."""
    all_on = dict.fromkeys(["D", "z", "bias", "softplus", "h0"], True)
    default = {
        "conv bf16 bias init silu": conv_case(BF16, True, True, True),
        "conv_update bf16 bias silu": conv_update_case(BF16, True, True),
        "hyena bf16 bias": hyena_case(BF16, True),
        "norm bf16 d=2560 res bias": norm_case(BF16, 2560, True, True, False),
        "scan bf16 n=16 all flags": scan_case(BF16, 16, all_on, groups=2),
        "state_update bf16 n=16 all flags": state_update_case(BF16, 16, all_on),
        "ssd bf16 p=64 n=128 init": ssd_case(BF16, 64, 128, True),
    }
    if not everything:
        return default
    out = dict(default)
    bits = [False, True]
    for dtype, tag in ((BF16, "bf16"), (F32, "fp32")):
        for bias in bits:
            for init in bits:
                for silu in bits:
                    for width in (2, 4):
                        out[f"conv {tag} bias={bias} init={init} silu={silu} w={width}"] = conv_case(
                            dtype, bias, init, silu, width
                        )
        out[f"conv {tag} time-major"] = conv_case(dtype, True, True, True, time_major=True)
        for bias in bits:
            for silu in bits:
                out[f"conv_update {tag} bias={bias} silu={silu}"] = conv_update_case(dtype, bias, silu)
            out[f"hyena {tag} bias={bias}"] = hyena_case(dtype, bias)
        for d in (256, 2560, 5120):
            for residual in bits:
                for bias in bits:
                    for rms in bits:
                        out[f"norm {tag} d={d} res={residual} bias={bias} rms={rms}"] = norm_case(
                            dtype, d, residual, bias, rms
                        )
        for n in (16, 64):
            for values in ([False] * 5, [True] * 5, *([i == j for j in range(5)] for i in range(5))):
                f = _flags(["D", "z", "bias", "softplus", "h0"], values)
                out[f"scan {tag} n={n} {f}"] = scan_case(dtype, n, f)
                out[f"state_update {tag} n={n} {f}"] = state_update_case(dtype, n, f)
            out[f"scan {tag} n={n} grouped time-major"] = scan_case(dtype, n, all_on, groups=2, time_major=True)
        for p, n in ((64, 128), (64, 64), (40, 20)):
            for init in bits:
                out[f"ssd {tag} p={p} n={n} init={init}"] = ssd_case(dtype, p, n, init)
        out[f"ssd {tag} p=64 n=128 chunk=256 groups=2"] = ssd_case(dtype, 64, 128, True, chunk=256, groups=2)
    return out


def compile_cases(
    names: list[str] | None = None,
    everything: bool = False,
    progress: Callable[[str, list[Compiled]], None] | None = None,
) -> tuple[list[Compiled], list[Failure]]:
    """Compile the kernels of the chosen cases (default: all of the set) for sm_90a. Without ``everything``,
    each kernel compiles once (its first launch, first autotune config): the fast check of the test suite."""
    from longseq.kernels._backend import interpreting

    if interpreting():
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter replaces the kernels this module compiles")
    table = cases(everything)
    compiled: list[Compiled] = []
    failures: list[Failure] = []
    seen: set[str] = set()
    once = None if everything else set()
    for name in names or list(table):
        current: list = []
        try:
            with _compile_instead_of_launch(current.append, once):
                table[name]()
        except Exception as err:  # a CompilationError is the finding; report it with its case
            failures.append(Failure(name, f"{type(err).__name__}: {err}"))
        new = []
        for kernel in current:
            if kernel.hash not in seen:  # the same specialisation reached from two cases counts once
                seen.add(kernel.hash)
                new.append(_describe(name, kernel))
        compiled.extend(new)
        if progress is not None:
            progress(name, new)
    return compiled, failures


def _table(compiled: list[Compiled]) -> str:
    lines = [
        "| case | kernel | constexprs | warps | stages | regs | stack (spill) B | shared B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in compiled:
        consts = " ".join(f"{k}={v}" for k, v in c.constexprs.items() if k.startswith("BLOCK") or k == "ROWS")
        lines.append(
            f"| {c.case} | {c.kernel} | {consts} | {c.num_warps} | {c.num_stages} | {c.regs} | {c.stack} | {c.shared} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every variant, not one per kernel")
    parser.add_argument("--case", action="append", help="only the cases whose name contains this (repeatable)")
    parser.add_argument("--json", help="write the compiled kernels and failures here")
    parser.add_argument("--table", action="store_true", help="print a markdown table of every compiled kernel")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("error: unset TRITON_INTERPRET (the interpreter never compiles)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    names = [name for name in cases(args.all) if any(part in name for part in args.case)] if args.case else None

    def progress(case: str, new: list[Compiled]) -> None:
        flagged = "".join(
            f"\n  PROBLEM {c.kernel} {c.constexprs} w{c.num_warps}: {p}" for c in new for p in c.problems()
        )
        print(f"{case}: {len(new)} new kernels{flagged}", file=sys.stderr, flush=True)

    compiled, failures = compile_cases(names, args.all, progress)
    seconds = time.perf_counter() - start
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "seconds": seconds,
                    "compiled": [{**dataclasses.asdict(c), "problems": c.problems()} for c in compiled],
                    "failures": [dataclasses.asdict(f) for f in failures],
                },
                f,
                indent=1,
                default=str,
            )
    if args.table:
        print(_table(compiled))
    for f in failures:
        print(f"FAILED {f.case}: {f.error.splitlines()[0] if f.error else ''}\n{f.error[-2000:]}")
    problems = sum(bool(c.problems()) for c in compiled)
    print(
        f"{len(compiled)} kernels compiled for sm_90a, {problems} spill or exceed shared memory, "
        f"{len(failures)} cases failed to compile, in {seconds:.1f} s"
    )
    return 1 if failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
