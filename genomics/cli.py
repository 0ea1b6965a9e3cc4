"""``dna``: embed sequence files, convert official checkpoints, pretrain and fine-tune (Lightning).

Each command is a plain function (callable from Python and tests); `core.cli.run` parses flags and config
files with jsonargparse and turns bad input into one line on stderr and exit status 2. Heavy imports happen
inside the commands, so ``dna --help`` is instant.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from longseq.core.cli import run

Pooling = Literal["mean", "max", "last", "none"]


@dataclass(kw_only=True)
class Training:
    """How to train (becomes `core.train`'s TrainerConfig and OptimizerConfig)."""

    max_steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 8
    """Sequences (windows) per batch and per device."""
    lr: float | None = None
    """Peak learning rate (default: the paper's, 6e-4 for HyenaDNA and 8e-3 for Caduceus pretraining)."""
    weight_decay: float = 0.1
    """AdamW weight decay (never on biases, norms, Hyena filters, SSM A and D)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up before the cosine decay."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    """Devices (on the CPU: processes) per node."""
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    """auto: one device; ddp: data parallel; fsdp: sharded (GPUs)."""
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "bf16-true"] = "32-true"
    val_every: int | None = None
    """Validate every n training batches (None: at the end of each epoch)."""
    limit_val_batches: int | float = 1.0
    """Validation batches to run (a count, or a fraction of the validation set)."""
    checkpoint_dir: str | None = None
    """Where to keep Lightning checkpoints for resuming (None: no checkpoints)."""
    checkpoint_every: int | None = None
    """Checkpoint every n steps (None: at the end of each epoch)."""
    resume: bool = False
    """Continue from last.ckpt in checkpoint_dir, exactly where it stopped."""
    log_dir: str = "runs"
    """CSV logs go to <log_dir>/<command>/version_<k>/."""
    seed: int = 0


def _device(name: str):
    import torch

    from longseq.core.io import InputError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but CUDA is not available")
    return device


def _keep_large_buffers_in_mmap() -> None:
    """Stop glibc from raising its mmap threshold, so activation buffers freed after each batch go back to the OS.

    Otherwise glibc serves them from its heap after the first large frees, and the heap fragments as windows stream
    by: the resident memory of `dna embed` grew 3x over a 4.9 Mbp genome while Python held under 1 MiB of it.
    Not glibc (macOS, musl): nothing to do.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB (a fixed value also disables the dynamic one)


def embed(
    input: Path,
    output: Path,
    *,
    model: str,
    pooling: Pooling = "mean",
    window: int | None = None,
    stride: int | None = None,
    rc: bool | None = None,
    layer: int = -1,
    batch_size: int = 16,
    device: str = "cpu",
    bed: Path | None = None,
    soft_masked: Literal["upper", "n"] = "upper",
    ambiguous: Literal["n", "error"] = "n",
) -> None:
    """Embed the sequences of a FASTA, FASTQ or GenBank file (gzipped or not) into an .npz.

    Records longer than the window are embedded in windows. The .npz holds ``ids`` and ``lengths``; pooled
    outputs add ``embeddings`` (one row per window), ``record``, ``start``, ``end`` and ``record_embeddings``
    (one row per record); ``--pooling none`` adds ``emb_<i>`` (length, d) per record. Written atomically.

    Args:
        input: the sequence file (with --bed: the reference FASTA).
        output: the .npz to write.
        model: a checkpoint directory (ours, HyenaDNA HF or original, Caduceus HF) or a preset name.
        pooling: mean, max or last over each window, or none for one vector per nucleotide.
        window: window length (default: the model's context length).
        stride: step between windows (default: the window; smaller overlaps, larger samples).
        rc: average with the reverse complement strand (default: on for Caduceus-Ph, the post-hoc conjoining
            it was trained for; Caduceus-PS is RC-invariant by construction).
        layer: hidden states to take: -1 the final ones, 0 the token embeddings, k after block k.
        batch_size: windows per forward pass.
        device: cpu or cuda.
        bed: BED intervals over the input FASTA: embed those intervals (minus strand reverse-complemented).
        soft_masked: lowercase bases read as bases (upper) or as N (n).
        ambiguous: IUPAC ambiguity codes become N (n) or are refused (error).
    """
    import time

    import torch
    from tqdm import tqdm

    from longseq.core.io import InputError, atomic_output
    from longseq.core.registry import from_pretrained, list_models
    from longseq.genomics.data.bed import bed_records
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.embed import embed_records, write_embeddings
    from longseq.genomics.models.caduceus import Caduceus

    if output.is_dir():
        raise InputError(f"{output} is a directory; give a file name for the .npz")
    if batch_size < 1:
        raise InputError(f"--batch_size must be positive; got {batch_size}")
    _keep_large_buffers_in_mmap()
    with atomic_output(output) as tmp:
        dev = _device(device)
        net = from_pretrained(model).to(dev).eval()
        if model in list_models() and not Path(model).exists():
            print(f"note: {model} is a preset with random weights", file=sys.stderr)
        context = net.context_length
        if window is None:
            if context is None:
                raise InputError(f"{model} does not record the length it was trained at; pass --window")
            window = context
        if window < 1 or (stride is not None and stride < 1):
            raise InputError(f"--window and --stride must be positive; got {window}, {stride}")
        if context is not None and window > context:
            raise InputError(f"--window {window} is longer than the model's context ({context})")
        use_rc = rc if rc is not None else isinstance(net, Caduceus) and not net.config.rcps
        records = bed_records(input, bed) if bed is not None else read_records(input)
        tokenizer = DNATokenizer(soft_masked=soft_masked, ambiguous=ambiguous)
        start = time.perf_counter()
        with tqdm(unit="bp", unit_scale=True, desc="embedding", disable=None) as bar, torch.inference_mode():
            results = embed_records(
                net,
                records,
                window=window,
                stride=stride or window,
                pooling=pooling,
                rc=use_rc,
                layer=layer,
                batch_size=batch_size,
                tokenizer=tokenizer,
                device=dev,
                progress=bar,
            )
            n_records, bases = write_embeddings(tmp, results, pooling)
        seconds = time.perf_counter() - start
    print(f"embedded {n_records} record(s), {bases:,} bases in {seconds:.1f} s ({bases / seconds:,.0f} bases/s)")


def _check_new_directory(output: Path) -> None:
    import os

    from longseq.core.io import InputError

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output} already exists; remove it or choose another directory")
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise InputError(f"cannot create {output}: {output.parent} is not a writable directory")


def _save_directory(model, output: Path) -> None:
    """save_pretrained into a temporary directory, renamed to ``output`` once complete."""
    import os
    import shutil

    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    try:
        model.save_pretrained(tmp)
        if output.exists():
            output.rmdir()
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _trainer(training: Training, run_name: str, *, default_lr: float):
    """The Lightning trainer and optimizer config for ``training``; bad values become InputError."""
    from longseq.core.io import InputError
    from longseq.core.train import OptimizerConfig, TrainerConfig, build_trainer

    if training.resume and training.checkpoint_dir is None:
        raise InputError("--training.resume needs --training.checkpoint_dir")
    if training.batch_size < 1:
        raise InputError(f"--training.batch_size must be positive; got {training.batch_size}")
    try:
        config = TrainerConfig(
            max_steps=training.max_steps,
            accelerator=training.accelerator,
            devices=training.devices,
            strategy=training.strategy,
            precision=training.precision,
            val_every_n_batches=training.val_every,
            limit_val_batches=training.limit_val_batches,
            checkpoint_dir=training.checkpoint_dir,
            checkpoint_every_n_steps=training.checkpoint_every,
            log_dir=training.log_dir,
            run_name=run_name,
            seed=training.seed,
        )
        optimizer = OptimizerConfig(
            lr=training.lr or default_lr, weight_decay=training.weight_decay, warmup_steps=training.warmup_steps
        )
    except ValueError as err:
        raise InputError(f"--training: {err}") from None
    return build_trainer(config), optimizer


def _report(trainer, output: Path) -> None:
    metrics = " ".join(
        f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val/")
    )
    print(f"saved {output}" + (f"; {metrics}" if metrics else ""))


def pretrain(
    input: Path,
    output: Path,
    *,
    model: str,
    training: Training | None = None,
    seq_len: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    rc_augment: bool | None = None,
    seq_warmup_start: int | None = None,
    seq_warmup_stage_steps: int = 0,
    mask_prob: float = 0.15,
) -> None:
    """Pretrain on a genome: HyenaDNA by next-token prediction, Caduceus by masked language modelling.

    Each record is split by position: the first 1 - val - test trains, the next val_fraction validates, the last
    test_fraction is held out and never read. The trained model is written in our format to ``output``.

    Args:
        input: FASTA / FASTQ / GenBank (gzipped or not).
        output: the directory for the trained model (must not exist, or be empty).
        model: what to start from: a preset (random init) or a checkpoint directory (continued pretraining).
        training: steps, batch size, learning rate, devices, checkpoints and resume.
        seq_len: training window length (default: the model's context).
        val_fraction, test_fraction: the tail fractions of each record for validation and held out.
        rc_augment: train on reverse complements half the time (default: on for Caduceus-Ph, off otherwise).
        seq_warmup_start: sequence-length warm-up: start at this window length (None: no warm-up) ...
        seq_warmup_stage_steps: ... and double it every this many steps, up to seq_len.
        mask_prob: Caduceus masked-LM selection rate.
    """
    import torch

    from longseq.core.io import InputError
    from longseq.core.registry import from_pretrained
    from longseq.core.train import TokenWindowDataModule, fit
    from longseq.genomics.data.splits import split_genome
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.tasks.pretrain import PretrainTask

    training = training or Training()
    _check_new_directory(output)
    net = from_pretrained(model).train()
    is_caduceus = isinstance(net, Caduceus)
    if not hasattr(net, "lm_head"):
        raise InputError(f"{model} is not a language model (HyenaDNA or Caduceus)")
    context = net.context_length
    seq_len = seq_len or context
    if seq_len is None:
        raise InputError(f"{model} does not record its training length; pass --seq_len")
    if context is not None and seq_len > context:
        raise InputError(f"--seq_len {seq_len} is longer than the model's context ({context})")
    split = split_genome(input, val_fraction=val_fraction, test_fraction=test_fraction)
    train_ids = torch.from_numpy(split.joined("train"))
    val_ids = torch.from_numpy(split.joined("val")) if val_fraction > 0 else None
    if val_ids is not None and val_ids.numel() <= seq_len:
        raise InputError(f"the validation part ({val_ids.numel()} bases) is shorter than one window of {seq_len}")
    trainer, optimizer = _trainer(training, "pretrain", default_lr=8e-3 if is_caduceus else 6e-4)
    data = TokenWindowDataModule(
        train_ids, val_ids, seq_len=seq_len, batch_size=training.batch_size, seed=training.seed
    )
    task = PretrainTask(
        net,
        objective="mlm" if is_caduceus else "causal",
        optimizer=optimizer,
        rc_augment=rc_augment if rc_augment is not None else is_caduceus and not net.config.rcps,
        warmup_start=seq_warmup_start,
        warmup_stage_steps=seq_warmup_stage_steps,
        mask_prob=mask_prob,
    )
    fit(trainer, task, data, resume="last" if training.resume else None)
    if trainer.is_global_zero:
        _save_directory(net.eval(), output)
        _report(trainer, output)


def finetune(
    train: Path,
    output: Path,
    *,
    model: str,
    val: Path | None = None,
    training: Training | None = None,
    pooling: Literal["mean", "max", "last"] = "mean",
    rc_augment: bool | None = None,
    conjoin: bool | None = None,
    dropout: float = 0.0,
) -> None:
    """Fine-tune a pretrained model for sequence classification on labelled CSV / TSV files.

    Rows are ``sequence,label`` (a header naming the two columns is optional). Validation reports accuracy,
    Matthews correlation and AUROC. The classifier is written in our format to ``output``.

    Args:
        train: the training table.
        output: the directory for the fine-tuned classifier (must not exist, or be empty).
        model: the pretrained backbone: a checkpoint directory (ours or official) or a preset (random init).
        val: a validation table (its labels must be among the training labels).
        training: steps, batch size, learning rate (default 6e-4), devices, checkpoints and resume.
        pooling: how positions are pooled before the linear head (mean, as in the HyenaDNA benchmarks).
        rc_augment: train on reverse complements half the time (default: on for Caduceus-Ph).
        conjoin: average with the reverse complement's logits at inference (default: on for Caduceus-Ph).
        dropout: before the head.
    """
    from longseq.core.io import InputError
    from longseq.core.registry import from_pretrained
    from longseq.core.train import fit
    from longseq.genomics.data.tables import read_labelled
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.models.classifier import SequenceClassifier
    from longseq.genomics.tasks.finetune import ClassificationTask, LabelledDataModule, LabelledDataset

    training = training or Training()
    _check_new_directory(output)
    backbone = from_pretrained(model)
    if not hasattr(backbone, "lm_head"):
        raise InputError(f"{model} is not a pretrained HyenaDNA or Caduceus model")
    is_ph = isinstance(backbone, Caduceus) and not backbone.config.rcps
    train_data = read_labelled(train)
    tokenizer = DNATokenizer()
    context = backbone.context_length
    train_set = LabelledDataset(train_data, tokenizer=tokenizer, max_len=context, source=str(train))
    val_set = None
    if val is not None:
        val_data = read_labelled(val, classes=train_data.classes)
        val_set = LabelledDataset(val_data, tokenizer=tokenizer, max_len=context, source=str(val))
    classifier = SequenceClassifier.from_backbone(
        backbone.train(),
        train_data.classes,
        pooling=pooling,
        conjoin=is_ph if conjoin is None else conjoin,
        dropout=dropout,
    )
    trainer, optimizer = _trainer(training, "finetune", default_lr=6e-4)
    data = LabelledDataModule(train_set, val_set, batch_size=training.batch_size, seed=training.seed)
    task = ClassificationTask(classifier, optimizer=optimizer, rc_augment=is_ph if rc_augment is None else rc_augment)
    fit(trainer, task, data, resume="last" if training.resume else None)
    if trainer.is_global_zero:
        _save_directory(classifier.eval(), output)
        _report(trainer, output)


def convert(source: str, output: Path, *, filter_shift: float = 0.05) -> None:
    """Convert a checkpoint to our format (config.json + model.safetensors).

    Args:
        source: a HyenaDNA HF or original (Lightning) directory, a Caduceus HF directory, ours, or a preset.
        output: the directory to create (it must not exist, or be empty).
        filter_shift: HyenaDNA's filter modulation shift (0.05, as in the released code).
    """
    from longseq.core.registry import from_pretrained

    _check_new_directory(output)
    model = from_pretrained(source, filter_shift=filter_shift)
    _save_directory(model, output)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {output} ({type(model).__name__}, {params:,} parameters)")


def main(argv: list[str] | None = None) -> int:
    return run({"embed": embed, "pretrain": pretrain, "finetune": finetune, "convert": convert}, argv, prog="dna")


if __name__ == "__main__":
    sys.exit(main())
