"""``bytelm``: train a byte model on a directory of files, generate bytes, score a file in bits per byte.

Each command is a plain function (callable from Python and tests); `core.cli.run` parses flags and config
files with jsonargparse and turns bad input into one line on stderr and exit status 2. Models load inside the
commands; the training configs (`core.train`, which imports lightning) are imported here because they are
``bytelm train``'s flags. Bytes are bytes: prompts, files and output need not be UTF-8.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from longseq.bytes.data.files import BytesDataConfig
from longseq.core.cli import run
from longseq.core.train import OptimizerConfig, TrainerConfig


def _note_preset(model: str) -> None:
    from longseq.core.registry import list_models

    if model in list_models() and not Path(model).exists():
        print(f"note: {model} is a preset with random weights", file=sys.stderr)


def _load(model: str, device: str):
    """A byte model (eval mode) on ``--device``; another family's checkpoint is a one-line error."""
    from longseq.bytes.models import ByteLM
    from longseq.core.io import resolve_device

    return ByteLM.from_pretrained(model).to(resolve_device(device))


def train(
    output: Path,
    *,
    model: str = "mblm-small-tt",
    trainer: TrainerConfig = TrainerConfig(max_steps=1000, run_name="bytelm"),  # noqa: B008 (jsonargparse groups)
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, weight_decay=0.1, warmup_steps=100),  # noqa: B008
    data: BytesDataConfig = BytesDataConfig(),  # noqa: B008
) -> None:
    """Train a byte model on every file under a directory (split by file) and write it to a new directory.

    The output directory (created once every input is checked; removed if training fails) gets split.json (which
    files were held out) and, at the end, the model (config.json + model.safetensors: give the directory to
    ``bytelm generate --model``) and summary.json. Validation reports val/bpb, bits per byte.

    Args:
        output: the new directory for the trained model.
        model: a preset (mblm-small-tt, mblm-small-st, megabyte-small, mblm-1m, ...) or a checkpoint directory
            to start from.
        trainer: steps, hardware, precision, checkpoints (--trainer.checkpoint_dir, outside the output), resume
            (--trainer.resume last), logs, seed.
        optimizer: AdamW with a cosine schedule after a linear warm-up.
        data: the files (--data.path), batch size, window length, held-out fractions by file, split seed.
    """
    from longseq.bytes.tasks.lm import train_on_files

    summary = train_on_files(data, output, model=model, trainer=trainer, optimizer=optimizer)
    if summary is None:  # another process of a data-parallel run: the first one reports
        return
    bpb = summary["metrics"].get("val/bpb")
    shown = f", validation {bpb:.3f} bits per byte" if bpb is not None else ""
    print(f"trained {summary['steps']} steps on {summary['train_bytes']:,} bytes{shown}; model in {output}")


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
        max_new_bytes: bytes to generate (the prompt and its continuation fit in the model's context).
        greedy: always take the most likely byte (else sample).
        temperature, top_k, top_p: sampling (top_k 0 and top_p 1 are off).
        seed: sampling seed.
        output: write the new bytes to this file (default: stdout, as they are produced).
        device: cpu, cuda, cuda:1, mps.
    """
    import torch

    from longseq.bytes.data.files import read_file
    from longseq.core.io import InputError, atomic_output, check_not_overwriting

    if (prompt is None) == (prompt_file is None):
        raise InputError("give exactly one of --prompt and --prompt_file")
    if max_new_bytes < 1:
        raise InputError(f"--max_new_bytes must be >= 1, got {max_new_bytes}")
    if not (0 < temperature < math.inf and top_k >= 0 and 0 < top_p <= 1):
        raise InputError(f"need 0 < --temperature < inf, --top_k >= 0 and 0 < --top_p <= 1; got {temperature}, "
                         f"{top_k}, {top_p}")  # fmt: skip
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if output is not None:
        check_not_overwriting(output, prompt_file)
        if output.is_dir():
            raise InputError(f"--output {output} is a directory; give a file name")
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
    output: Path | None = None,
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
        output: also write the result to this JSON file (path, bytes, bits_per_byte, window, stride, model).
        device: cpu, cuda, cuda:1, mps.
    """
    import torch

    from longseq.bytes.data.files import list_files, read_bytes, read_file
    from longseq.core.io import InputError, atomic_output, check_not_overwriting

    if batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {batch_size}")
    for name, value in (("window", window), ("stride", stride)):
        if value is not None and value < 1:
            raise InputError(f"--{name} must be >= 1, got {value}")
    if output is not None:
        check_not_overwriting(output, path)
        if output.is_dir():
            raise InputError(f"--output {output} is a directory; give a file name")
    data = read_file(path) if Path(path).is_file() else read_bytes(list_files(path))
    if data.numel() == 0:
        raise InputError(f"the files under {path} are all empty")
    net = _load(model, device)
    window = net.context if window is None else window
    stride = window if stride is None else stride
    if window > net.context:
        raise InputError(f"--window must lie in [1, {net.context}] (the model's context), got {window}")
    if stride > window:
        raise InputError(f"--stride must lie in [1, {window}] (the window), got {stride}")
    with torch.inference_mode():
        bpb = net.bits_per_byte(data, batch_size=batch_size, window=window, stride=stride, progress=sys.stderr.isatty())
    print(f"{path}: {data.numel():,} bytes, {bpb:.4f} bits per byte")
    if output is not None:
        result = {"path": str(path), "bytes": data.numel(), "bits_per_byte": bpb, "window": window, "stride": stride}
        with atomic_output(output) as tmp:
            tmp.write_text(json.dumps({**result, "model": model}, indent=2) + "\n")
    _note_preset(model)


def main(argv: list[str] | None = None) -> int:
    return run({"train": train, "generate": generate, "eval": evaluate}, argv, prog="bytelm")


if __name__ == "__main__":
    sys.exit(main())
