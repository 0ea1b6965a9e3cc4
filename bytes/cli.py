"""``bytelm``: train a byte model on a directory of files, generate bytes, score a file in bits per byte.

Each command is a plain function (callable from Python and tests); `core.cli.run` parses flags and config
files with jsonargparse and turns bad input into one line on stderr and exit status 2. Heavy imports happen
inside the commands, so ``bytelm --help`` is instant. Bytes are bytes: prompts, files and output need not be
UTF-8.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from longseq.core.cli import run


def _note_preset(model: str) -> None:
    from longseq.bytes.models import PRESETS

    if model in PRESETS and not Path(model).exists():
        print(f"note: {model} is a preset with random weights", file=sys.stderr)


def _load(model: str, device: str):
    import torch

    from longseq.core.io import InputError
    from longseq.core.registry import from_pretrained

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but CUDA is not available")
    return from_pretrained(model).to(dev).eval()


def train(
    data: Path,
    out: Path,
    *,
    model: str = "mblm-small-tt",
    max_steps: int = 1000,
    batch_size: int = 8,
    seq_len: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 100,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 0,
    val_every: int | None = None,
    checkpoint_every: int = 100,
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto",
    devices: int = 1,
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
    seed: int = 0,
    resume: bool = False,
) -> None:
    """Train on every file under a directory, split by file; write a run directory.

    The run directory gets split.json, model_config.json, checkpoints/last.ckpt, logs/ (CSV, with bits per byte)
    and, at the end, model/ (load it with `bytelm generate --model OUT/model`). Validation reports val/bpb.

    Args:
        data: a directory of files (any bytes) or a single file.
        out: the run directory (created if missing).
        model: a preset (mblm-small-tt, mblm-small-st, megabyte-small, mblm-1m, ...) or a checkpoint directory.
        max_steps: optimizer steps.
        batch_size: windows per step.
        seq_len: bytes per window (default: the model's context - 1).
        lr, weight_decay, warmup_steps: AdamW with a cosine schedule after a linear warm-up.
        val_fraction, test_fraction: shares of the files held out for validation and test (never trained on).
        split_seed: seed of the split by file.
        val_every: validate every n steps (default: once per epoch).
        checkpoint_every: write checkpoints/last.ckpt every n steps.
        accelerator, devices, precision: Lightning hardware settings.
        seed: seed of initialisation, data order and dropout.
        resume: continue from OUT/checkpoints/last.ckpt when it exists (same data order and next loss).
    """
    from longseq.bytes.tasks.lm import train_on_files
    from longseq.core.train import OptimizerConfig, TrainerConfig

    trainer = TrainerConfig(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        val_every_n_batches=val_every,
        checkpoint_every_n_steps=checkpoint_every,
        checkpoint_dir=str(out / "checkpoints"),
        log_dir=str(out / "logs"),
        log_every_n_steps=min(10, max_steps),
        seed=seed,
        run_name="bytelm",
    )
    optimizer = OptimizerConfig(lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps)
    summary = train_on_files(
        data,
        out,
        model=model,
        trainer=trainer,
        optimizer=optimizer,
        batch_size=batch_size,
        seq_len=seq_len,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        resume=resume,
    )
    bpb = summary["metrics"].get("val/bpb")
    shown = f", validation {bpb:.3f} bits per byte" if bpb is not None else ""
    print(f"trained {summary['steps']} steps on {summary['train_bytes']:,} bytes{shown}; model in {out / 'model'}")


def generate(
    model: str,
    *,
    prompt: str | None = None,
    prompt_file: Path | None = None,
    max_new_bytes: int = 256,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    output: Path | None = None,
    device: str = "cpu",
) -> None:
    """Continue a prompt byte by byte (cached generation) and write the new bytes.

    Args:
        model: a checkpoint directory (or a preset, with random weights).
        prompt: the prompt as text (encoded as UTF-8; undecodable command-line bytes pass through as they are).
        prompt_file: the prompt as the raw bytes of a file (instead of --prompt).
        max_new_bytes: bytes to generate.
        greedy: always take the most likely byte (else sample).
        temperature, top_k, top_p: sampling (top_k 0 and top_p 1 are off).
        seed: sampling seed.
        output: write the new bytes to this file (default: stdout, as they are produced).
        device: cpu or cuda.
    """
    import torch

    from longseq.bytes.data.files import read_file
    from longseq.core.io import InputError, atomic_output

    if (prompt is None) == (prompt_file is None):
        raise InputError("give exactly one of --prompt and --prompt_file")
    if max_new_bytes < 1:
        raise InputError(f"--max_new_bytes must be >= 1, got {max_new_bytes}")
    if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
        raise InputError("need --temperature > 0, --top_k >= 0 and 0 < --top_p <= 1")
    if prompt_file is not None:
        data = read_file(prompt_file)
    else:
        raw = prompt.encode("utf-8", errors="surrogateescape")
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.zeros(0, dtype=torch.uint8)
    net = _load(model, device)
    if data.numel() + max_new_bytes > net.context:
        raise InputError(
            f"a prompt of {data.numel()} bytes plus {max_new_bytes} new bytes exceeds the model's context of "
            f"{net.context} bytes"
        )
    ids = data.long()[None].to(next(net.parameters()).device)
    generator = torch.Generator(device=ids.device).manual_seed(seed)
    options = {"do_sample": not greedy, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    if output is None:
        stream = sys.stdout.buffer

        def emit(token):
            stream.write(bytes([int(token[0])]))
            stream.flush()

        net.generate(ids, max_new_bytes, generator=generator, callback=emit, **options)
        _note_preset(model)
        return
    if output.is_dir():
        raise InputError(f"{output} is a directory; give a file name")
    with atomic_output(output) as tmp:
        out = net.generate(ids, max_new_bytes, generator=generator, **options)
        tmp.write_bytes(bytes(out[0, ids.shape[1] :].tolist()))
    print(f"wrote {max_new_bytes} bytes to {output}", file=sys.stderr)
    _note_preset(model)


def evaluate(
    path: Path,
    *,
    model: str,
    batch_size: int = 8,
    window: int | None = None,
    stride: int | None = None,
    device: str = "cpu",
) -> None:
    """Bits per byte of a file (or of every file under a directory, concatenated) under a model.

    The bytes are scored in windows of ``window`` bytes that start every ``stride`` bytes, each window scoring the
    bytes no earlier one did: by default consecutive windows of the model's context, each starting without history.

    Args:
        path: a file or a directory.
        model: a checkpoint directory (or a preset, with random weights).
        batch_size: windows per forward pass.
        window: bytes per window (default: the model's context; e.g. the training length when that is shorter).
        stride: bytes between window starts (default: the window); smaller gives every byte at least window -
            stride bytes of history, at window / stride times the compute.
        device: cpu or cuda.
    """
    import torch

    from longseq.bytes.data.files import list_files, read_bytes, read_file
    from longseq.core.io import InputError

    if batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {batch_size}")
    data = read_file(path) if Path(path).is_file() else read_bytes(list_files(path))
    if data.numel() == 0:
        raise InputError(f"the files under {path} are all empty")
    net = _load(model, device)
    if window is not None and not 1 <= window <= net.context:
        raise InputError(f"--window must lie in [1, {net.context}] (the model's context), got {window}")
    if stride is not None and not 1 <= stride <= (window or net.context):
        raise InputError(f"--stride must lie in [1, {window or net.context}] (the window), got {stride}")
    with torch.inference_mode():
        bpb = net.bits_per_byte(data, batch_size=batch_size, window=window, stride=stride, progress=sys.stderr.isatty())
    print(f"{path}: {data.numel():,} bytes, {bpb:.4f} bits per byte")
    _note_preset(model)


def main(argv: list[str] | None = None) -> int:
    return run({"train": train, "generate": generate, "eval": evaluate}, argv, prog="bytelm")


if __name__ == "__main__":
    sys.exit(main())
