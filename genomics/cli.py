"""``dna``: embed sequence files, convert official checkpoints, pretrain and fine-tune (Lightning).

Each command is a plain function (callable from Python and tests); `core.cli.run` parses flags and config files
with jsonargparse and turns bad input into one line on stderr and exit status 2. Every input is checked before
work starts; an output never overwrites an input, files are written atomically and output directories are created
only for a command that runs (and removed if it fails). The training commands take ``--trainer.*``,
``--optimizer.*`` and ``--data.*``; importing them loads lightning, everything else is imported inside the
commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from longseq.core.cli import run
from longseq.core.memory import reuse_freed_memory
from longseq.core.train import OptimizerConfig, TrainerConfig
from longseq.genomics.data.config import GenomeDataConfig, LabelledDataConfig

Pooling = Literal["mean", "max", "last", "none"]
Precision = Literal["32-true", "bf16-mixed"]


def _dna_model(name: str):
    """`longseq.from_pretrained`, refusing anything but a HyenaDNA, Caduceus or DNA classifier (one line)."""
    from longseq.core.registry import load_as
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.models.classifier import SequenceClassifier
    from longseq.genomics.models.hyenadna import HyenaDNA

    return load_as(name, (HyenaDNA, Caduceus, SequenceClassifier), "HyenaDNA or Caduceus model")


def _language_model(name: str):
    """A HyenaDNA or Caduceus language model (a fine-tuned classifier is refused: it has no LM head)."""
    from longseq.core.checkpoint import CheckpointError
    from longseq.genomics.models.classifier import SequenceClassifier

    model = _dna_model(name)
    if isinstance(model, SequenceClassifier):
        raise CheckpointError(f"{name} is a sequence classifier, not a HyenaDNA or Caduceus language model")
    return model


def _check_output_file(output: Path, *inputs: Path | str | None) -> None:
    """An output file that destroys no input, in a directory that exists (checked before any work)."""
    from longseq.core.io import InputError, check_not_overwriting

    check_not_overwriting(output, *inputs)
    if output.is_dir():
        raise InputError(f"{output} is a directory; give a file name")
    if not output.parent.is_dir():
        raise InputError(f"cannot write {output}: directory {output.parent} does not exist")


def _check_scale(devices: int, num_nodes: int, num_workers: int, batch_size: int) -> None:
    from longseq.core.io import InputError

    if devices < 1 or num_nodes < 1:
        raise InputError(f"--devices and --num_nodes must be positive, got {devices} and {num_nodes}")
    if num_workers < 0:
        raise InputError(f"--num_workers must be >= 0, got {num_workers}")
    if batch_size < 1:
        raise InputError(f"--batch_size must be positive, got {batch_size}")


def _check_windows(net, model: str, window: int | None, stride: int | None) -> tuple[int, int]:
    """The window and stride to cut records with (default: the model's context, no overlap)."""
    from longseq.core.io import InputError

    if (window is not None and window < 1) or (stride is not None and stride < 1):
        raise InputError(f"--window and --stride must be positive, got {window} and {stride}")
    context = net.context_length
    if window is None:
        if context is None:
            raise InputError(f"{model} does not record the length it was trained at; pass --window")
        window = context
    if context is not None and window > context:
        raise InputError(f"--window {window} is longer than the model's context ({context})")
    return window, stride or window


def _note_preset(model: str) -> None:
    from longseq.core.registry import list_models

    if model in list_models() and not Path(model).exists():
        print(f"note: {model} is a preset with random weights", file=sys.stderr)


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
    num_workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: Literal["ddp"] = "ddp",
    precision: Precision = "32-true",
) -> None:
    """Embed the sequences of a FASTA, FASTQ or GenBank file (gzipped or not) into an .npz.

    Records longer than the window are embedded in windows. The .npz holds ``ids`` and ``lengths``; pooled
    outputs add ``embeddings`` (one row per window), ``record``, ``start``, ``end`` and ``record_embeddings``
    (one row per record); ``--pooling none`` adds ``emb_<i>`` (length, d) per record. Written atomically.
    With ``--devices`` / ``--num_nodes`` above 1 the batches are spread over processes by Lightning's predict loop
    and gathered in input order: the same file as one process.

    Args:
        input: the sequence file (with --bed: the reference FASTA).
        output: the .npz to write (replaced if it exists; never one of the inputs).
        model: a checkpoint directory (ours, HyenaDNA HF or original, Caduceus HF), a preset or a Hub id.
        pooling: mean, max or last over each window, or none for one vector per nucleotide.
        window: window length (default: the model's context length).
        stride: step between windows (default: the window; smaller overlaps, larger samples).
        rc: average with the reverse complement strand (default: on for Caduceus-Ph, the post-hoc conjoining
            it was trained for; Caduceus-PS is RC-invariant by construction).
        layer: hidden states to take: -1 the final ones, 0 the token embeddings, k after block k.
        batch_size: windows per forward pass.
        device: cpu, cuda, cuda:1, mps (with --devices above 1: the accelerator, cpu or cuda).
        bed: BED intervals over the input FASTA: embed those intervals (minus strand reverse-complemented).
        soft_masked: lowercase bases read as bases (upper) or as N (n).
        ambiguous: IUPAC ambiguity codes become N (n) or are refused (error).
        num_workers: DataLoader processes that cut and tokenise windows beside the model (0: none).
        devices: processes per node (CPU processes over gloo, or GPUs), Lightning's ``devices``.
        num_nodes: machines (Lightning's; the output's directory must be on a file system all of them see).
        strategy: Lightning's strategy for several processes.
        precision: 32-true, or bf16-mixed: the model under bfloat16 autocast, embeddings within cosine 0.9999 of
            float32; HyenaDNA runs 1.2-1.5x faster on CPUs with AVX-512 BF16 or AMX, Caduceus (its time is in the
            float32 scans) little (benchmarks/RESULTS.md).
    """
    import time

    from tqdm import tqdm

    from longseq.core.io import InputError, atomic_output, resolve_device
    from longseq.genomics.data.bed import bed_records
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.embed import assemble, embed_batch, encode_windows, window_batches, write_embeddings
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.models.classifier import SequenceClassifier
    from longseq.genomics.scale import BatchStream, batch_outputs

    _check_output_file(output, input, bed, model)
    _check_scale(devices, num_nodes, num_workers, batch_size)
    dev = resolve_device(device)
    if precision == "bf16-mixed" and dev.type not in ("cpu", "cuda"):
        raise InputError(f"--precision bf16-mixed runs on cpu or cuda, not {dev.type}")
    reuse_freed_memory()
    net = _dna_model(model)
    if isinstance(net, SequenceClassifier):  # a fine-tuned backbone embeds like any other
        net = net.backbone
    net = net.to(dev)
    _note_preset(model)
    blocks = net.config.n_layer
    if not -1 <= layer <= blocks:
        raise InputError(f"--layer {layer}: the model has {blocks} blocks (-1 final, 0 embeddings .. {blocks})")
    window, stride = _check_windows(net, model, window, stride)
    use_rc = rc if rc is not None else isinstance(net, Caduceus) and not net.config.rcps
    tokenizer = DNATokenizer(soft_masked=soft_masked, ambiguous=ambiguous)

    def plans():
        records = bed_records(input, bed) if bed is not None else read_records(input)
        return window_batches(records, window=window, stride=stride, batch_size=batch_size)

    def compute(model, batch):
        return embed_batch(model, batch, pooling=pooling, rc=use_rc, layer=layer, precision=precision)

    stream = BatchStream(plans, lambda plan: encode_windows(plan, tokenizer))
    start = time.perf_counter()
    scale = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "workers": num_workers}
    with batch_outputs(net, stream, compute, device=dev, scratch=output.parent, **scale) as outputs:
        if outputs is None:  # a rank other than 0: its shard is written
            return
        with atomic_output(output) as tmp, tqdm(unit="bp", unit_scale=True, desc="embedding", disable=None) as bar:
            n_records, bases = write_embeddings(tmp, assemble(outputs, pooling, progress=bar), pooling)
    seconds = time.perf_counter() - start
    print(f"embedded {n_records} record(s), {bases:,} bases in {seconds:.1f} s ({bases / seconds:,.0f} bases/s)")


def predict(
    input: Path,
    output: Path,
    *,
    model: str,
    reference: Path | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    soft_masked: Literal["upper", "n"] = "upper",
    ambiguous: Literal["n", "error"] = "n",
    num_workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: Literal["ddp"] = "ddp",
) -> None:
    """Apply a fine-tuned classifier (``dna finetune``'s output) to new sequences: one TSV row per sequence.

    A row holds the sequence's id, length and number of windows, then one column per class (probabilities), label
    (multi-label probabilities) or target (regression values), and for a classifier the predicted class. Records
    longer than the window are cut into windows and the windows' outputs averaged, weighted by their lengths.
    Written atomically.

    Args:
        input: a FASTA / FASTQ / GenBank file (gzipped or not), a table (.csv, .tsv, .parquet; its ``sequence``
            column, named by ``name`` or ``id``), or with --reference a BED file of regions.
        output: the .tsv to write (replaced if it exists; never one of the inputs).
        model: a fine-tuned classifier directory.
        reference: the FASTA the BED regions are on (minus-strand regions are reverse-complemented).
        window: window length (default: the model's context length).
        stride: step between windows (default: the window).
        batch_size: windows per forward pass.
        device: cpu, cuda, cuda:1, mps.
        soft_masked: lowercase bases read as bases (upper) or as N (n).
        ambiguous: IUPAC ambiguity codes become N (n) or are refused (error).
        num_workers, devices, num_nodes, strategy: as for ``dna embed``.
    """
    import time

    from tqdm import tqdm

    from longseq.core.io import atomic_output, resolve_device
    from longseq.core.registry import load_as
    from longseq.genomics.data.bed import bed_records
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tables import read_sequences
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.embed import encode_windows, window_batches
    from longseq.genomics.models.classifier import SequenceClassifier
    from longseq.genomics.predict import aggregate, predict_batch, write_predictions
    from longseq.genomics.scale import BatchStream, batch_outputs

    _check_output_file(output, input, reference, model)
    _check_scale(devices, num_nodes, num_workers, batch_size)
    dev = resolve_device(device)
    reuse_freed_memory()
    net = load_as(model, SequenceClassifier, "fine-tuned classifier (dna finetune's output)").to(dev)
    window, stride = _check_windows(net, model, window, stride)
    tokenizer = DNATokenizer(soft_masked=soft_masked, ambiguous=ambiguous)

    def plans():
        if reference is not None:
            records = bed_records(reference, input)
        elif input.suffix.lower() in (".csv", ".tsv", ".parquet"):
            records = read_sequences(input)
        else:
            records = read_records(input)
        return window_batches(records, window=window, stride=stride, batch_size=batch_size)

    stream = BatchStream(plans, lambda plan: encode_windows(plan, tokenizer))
    start = time.perf_counter()
    scale = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "workers": num_workers}
    with batch_outputs(net, stream, predict_batch, device=dev, scratch=output.parent, **scale) as outputs:
        if outputs is None:
            return
        bar = tqdm(unit="bp", unit_scale=True, desc="predicting", disable=None)
        with atomic_output(output) as tmp, bar, open(tmp, "w") as handle:
            rows = write_predictions(handle, aggregate(outputs, progress=bar), net)
    print(f"predicted {rows} sequence(s) in {time.perf_counter() - start:.1f} s -> {output}")


def score(
    vcf: Path,
    reference: Path,
    output: Path,
    *,
    model: str,
    window: int | None = None,
    rc: bool | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    num_workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: Literal["ddp"] = "ddp",
) -> None:
    """Score the variants of a VCF with a language model: one TSV row per variant (ALT allele), in VCF order.

    Columns: chrom, pos, id, ref, alt, then ``llr`` (HyenaDNA: log-likelihood of the alternate window minus the
    reference window's) or ``masked_llr`` (Caduceus: the masked marginal log-ratio over the REF positions; empty
    for indels), ``cosine_distance`` and ``l2_distance`` (mean window embeddings). Windows are centred on the
    variant. Symbolic alleles, records without ALT and variants too near a contig end for the window are skipped
    and counted; a REF that disagrees with the reference or a contig it lacks is refused. Written atomically.

    Args:
        vcf: the variants (VCF, bgzipped VCF or BCF).
        reference: the genome (FASTA with a .fai index, made if missing; or bgzipped with .fai and .gzi).
        output: the .tsv to write (replaced if it exists; never one of the inputs).
        model: a HyenaDNA or Caduceus language model (a checkpoint directory, a preset, a Hub id).
        window: bases per window (default: the model's context length).
        rc: average the scores with the reverse complement strand's (default: on for Caduceus-Ph, which is
            conjoined post hoc; Caduceus-PS is RC-equivariant by construction; HyenaDNA is not RC-aware).
        batch_size: variants per forward pass (two windows each).
        device: cpu, cuda, cuda:1, mps.
        num_workers, devices, num_nodes, strategy: as for ``dna embed``.
    """
    import time

    from longseq.core.io import InputError, atomic_output, resolve_device
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.models.hyenadna import HyenaDNA
    from longseq.genomics.scale import BatchStream, batch_outputs
    from longseq.genomics.variants import encode_variants, open_reference, read_variants, score_batch, write_scores

    _check_output_file(output, vcf, reference, model)
    _check_scale(devices, num_nodes, num_workers, batch_size)
    dev = resolve_device(device)
    reuse_freed_memory()
    open_reference(reference).close()  # refuse an unreadable reference before loading the model
    net = _language_model(model).to(dev)
    _note_preset(model)
    window, _ = _check_windows(net, model, window, None)
    if window < 2:
        raise InputError(f"--window must be at least 2, got {window}")
    causal = isinstance(net, HyenaDNA)
    # Caduceus-PS is RC-equivariant by construction (averaging would change only rounding); Ph is conjoined post hoc.
    use_rc = (not causal and not net.config.rcps) if rc is None else rc
    tokenizer = DNATokenizer()

    def plans():
        genome = open_reference(reference)
        batch = []
        for variant in read_variants(vcf, genome, window=window):
            batch.append(variant)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def compute(model, batch):
        return score_batch(model, batch, causal=causal, rc=use_rc)

    stream = BatchStream(plans, lambda plan: encode_variants(plan, tokenizer))
    start = time.perf_counter()
    scale = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "workers": num_workers}
    with batch_outputs(net, stream, compute, device=dev, scratch=output.parent, **scale) as outputs:
        if outputs is None:
            return
        with atomic_output(output) as tmp, open(tmp, "w") as handle:
            counts = write_scores(handle, outputs, causal=causal)
    skipped = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in ("symbolic", "no_alt", "near_end") if counts[k])
    print(
        f"scored {counts['scored']} variant(s) in {time.perf_counter() - start:.1f} s -> {output}"
        + (f"; skipped {skipped}" if skipped else "")
    )


def _check_run(output: Path, trainer: TrainerConfig, model: str, *inputs: Path | None) -> None:
    """Before a training run: its output directory is new, destroys no input, and holds no checkpoints or logs
    (it is created for the trained model, and removed if the run fails)."""
    from longseq.core.io import check_not_overwriting

    check_not_overwriting(output, *inputs, model)
    trainer.check_outside(output)


def _report(trainer, output: Path) -> None:
    metrics = " ".join(
        f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val/")
    )
    print(f"saved {output}" + (f"; {metrics}" if metrics else ""))


def pretrain(
    output: Path,
    *,
    model: str,
    data: GenomeDataConfig,
    trainer: TrainerConfig = TrainerConfig(max_steps=1000, run_name="pretrain"),  # noqa: B008 (jsonargparse groups)
    optimizer: OptimizerConfig = OptimizerConfig(lr=6e-4),  # noqa: B008
    mask_prob: float = 0.15,
) -> None:
    """Pretrain on a genome: HyenaDNA by next-token prediction, Caduceus by masked language modelling.

    Each record is split by position (--data.val_fraction, --data.test_fraction); the trained model is written in
    our format to ``output``. ``--trainer.resume last`` continues a run exactly where it stopped.

    Args:
        output: the directory for the trained model (must not exist, or be empty).
        model: what to start from: a preset (random init), a checkpoint directory or a Hub id.
        data: the genome, window length, splits, batch size, augmentation, sequence-length warm-up.
        trainer: steps, devices, precision, checkpoints, resume, logging, seed.
        optimizer: AdamW and its schedule (lr 6e-4, HyenaDNA's; Caduceus was pretrained at 8e-3).
        mask_prob: Caduceus masked-LM selection rate, in (0, 1].
    """
    import torch

    from longseq.core.io import InputError, new_directory
    from longseq.core.train import TokenWindowDataModule, build_trainer, fit
    from longseq.genomics.data.splits import split_genome
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.tasks.pretrain import PretrainTask

    _check_run(output, trainer, model, data.input)
    if not 0 < mask_prob <= 1:
        raise InputError(f"--mask_prob must be in (0, 1], got {mask_prob}")
    with new_directory(output):
        lightning = build_trainer(trainer)  # seeds everything: the same model and data order on every run
        net = _language_model(model)
        context = net.context_length
        seq_len = data.seq_len or context
        if seq_len is None:
            raise InputError(f"{model} does not record its training length; pass --data.seq_len")
        if context is not None and seq_len > context:
            raise InputError(f"--data.seq_len {seq_len} is longer than the model's context ({context})")
        if data.seq_warmup_start is not None and data.seq_warmup_start > seq_len:
            raise InputError(f"--data.seq_warmup_start {data.seq_warmup_start} is longer than the windows ({seq_len})")
        split = split_genome(data.input, val_fraction=data.val_fraction, test_fraction=data.test_fraction)
        train_ids = torch.from_numpy(split.joined("train"))
        val_ids = torch.from_numpy(split.joined("val")) if data.val_fraction > 0 else None
        if val_ids is not None and val_ids.numel() <= seq_len:
            raise InputError(f"the validation part ({val_ids.numel()} bases) is shorter than one window of {seq_len}")
        windows = TokenWindowDataModule(
            train_ids, val_ids, seq_len=seq_len, batch_size=data.batch_size, seed=trainer.seed
        )
        net.gradient_checkpointing = trainer.gradient_checkpointing
        is_caduceus = isinstance(net, Caduceus)
        task = PretrainTask(
            net,
            objective="mlm" if is_caduceus else "causal",
            optimizer=optimizer,
            rc_augment=data.rc_augment if data.rc_augment is not None else is_caduceus and not net.config.rcps,
            warmup_start=data.seq_warmup_start,
            warmup_stage_steps=data.seq_warmup_stage_steps,
            mask_prob=mask_prob,
        )
        fit(lightning, task, windows, resume=trainer.resume)
        if lightning.is_global_zero:
            net.eval().save_pretrained(output)
            _report(lightning, output)


def _classifier(loaded, classes: list[str], task: str, **options):
    """A classifier for ``classes`` on a pretrained backbone, or a fine-tuned classifier (same task and outputs)
    trained further with its head."""
    from longseq.core.io import InputError
    from longseq.genomics.models.classifier import SequenceClassifier

    if not isinstance(loaded, SequenceClassifier):
        return SequenceClassifier.from_backbone(loaded, classes, task=task, **options)
    if loaded.config.task != task:
        raise InputError(f"the model is a {loaded.config.task} head; --task {task} needs a new head (a backbone)")
    if loaded.config.classes != classes:
        raise InputError(f"the model's outputs are {loaded.config.classes}, the training data's are {classes}")
    classifier = SequenceClassifier.from_backbone(loaded.backbone, classes, task=task, **options)
    classifier.head.load_state_dict(loaded.head.state_dict())
    return classifier


# What each task's validation logs (genomics.tasks.finetune.validation_metrics); the first is the default monitor.
METRICS = {
    "classification": ("mcc", "accuracy", "f1", "auroc", "auprc", "loss"),
    "multilabel": ("auroc", "auprc", "loss"),
    "regression": ("pearson", "spearman", "mse", "loss"),
}


def _best_checkpoint(trainer: TrainerConfig, monitor: str, scratch: Path):
    """Lightning's ModelCheckpoint keeping the weights of the best validation ``monitor`` (under
    ``--trainer.checkpoint_dir``/best when there is one, so a resumed run remembers its best; else in ``scratch``)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    directory = Path(trainer.checkpoint_dir) / "best" if trainer.checkpoint_dir is not None else scratch
    mode = "min" if monitor.endswith(("loss", "mse")) else "max"
    return ModelCheckpoint(
        dirpath=directory, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True
    )


def finetune(
    output: Path,
    *,
    model: str,
    data: LabelledDataConfig,
    trainer: TrainerConfig = TrainerConfig(max_steps=1000, run_name="finetune"),  # noqa: B008 (jsonargparse groups)
    optimizer: OptimizerConfig = OptimizerConfig(lr=6e-4),  # noqa: B008
    task: Literal["classification", "multilabel", "regression"] = "classification",
    pooling: Literal["mean", "max", "last"] = "mean",
    conjoin: bool | None = None,
    dropout: float = 0.0,
    freeze_backbone: bool = False,
    monitor: str | None = None,
    patience: int | None = None,
) -> None:
    """Fine-tune a pretrained model on labelled sequences: classification, multi-label or regression.

    Tables are CSV, TSV or parquet (the Nucleotide Transformer tasks' layout: sequence, label, name; multi-label
    and regression tables: a sequence column and one column per target); a directory is a GenomicBenchmarks split
    (one subdirectory per class, one sequence per file). Validation reports accuracy, MCC, F1, AUROC and AUPRC
    (classification), per-label AUROC and AUPRC (multi-label), MSE, Pearson and Spearman (regression). With a
    validation set the weights of the best ``--monitor`` value are the ones written (Lightning's ModelCheckpoint),
    and ``--patience`` stops early (Lightning's EarlyStopping). The classifier is written in our format to
    ``output``. ``--trainer.resume last`` continues a run exactly where it stopped.

    Args:
        output: the directory for the fine-tuned classifier (must not exist, or be empty).
        model: the pretrained backbone (a checkpoint directory, a preset, a Hub id), or a fine-tuned classifier
            to train further on the same task and outputs.
        data: the training and validation tables or directories, batch size, augmentation.
        trainer: steps, devices, precision, checkpoints, resume, logging, seed.
        optimizer: AdamW and its schedule.
        task: classification (softmax, cross-entropy), multilabel (a sigmoid per label, binary cross-entropy) or
            regression (mean squared error).
        pooling: how positions are pooled before the linear head (mean, as in the HyenaDNA benchmarks).
        conjoin: average with the reverse complement's logits at inference (default: on for Caduceus-Ph).
        dropout: before the head, in [0, 1).
        freeze_backbone: train the head only (a linear probe); the backbone's weights stay as loaded.
        monitor: the validation metric that picks the weights written (default: val/mcc, val/auroc or
            val/pearson by task; val/loss and val/mse are minimised, the others maximised).
        patience: stop when ``monitor`` has not improved for this many validations (None: never).
    """
    import tempfile

    import torch

    from longseq.core.io import InputError, new_directory
    from longseq.core.train import build_trainer, fit
    from longseq.genomics.data.tables import read_labelled
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.models.caduceus import Caduceus
    from longseq.genomics.models.classifier import SequenceClassifier
    from longseq.genomics.tasks.finetune import FinetuneTask, LabelledDataModule, LabelledDataset

    _check_run(output, trainer, model, data.train, data.val)
    if not 0 <= dropout < 1:
        raise InputError(f"--dropout must be in [0, 1), got {dropout}")
    if patience is not None and patience < 1:
        raise InputError(f"--patience must be positive, got {patience}")
    if (monitor is not None or patience is not None) and data.val is None:
        raise InputError("--monitor and --patience need a validation set (--data.val)")
    allowed = [f"val/{name}" for name in METRICS[task]]
    monitor = monitor or allowed[0]
    if monitor not in allowed:
        raise InputError(f"--monitor {monitor}: a {task} run validates {', '.join(allowed)}")
    with new_directory(output), tempfile.TemporaryDirectory(prefix=".best-", dir=output) as scratch:
        callbacks = []
        if data.val is not None:
            callbacks.append(_best_checkpoint(trainer, monitor, Path(scratch)))
        if patience is not None:
            from lightning.pytorch.callbacks import EarlyStopping

            callbacks.append(EarlyStopping(monitor=monitor, mode=callbacks[0].mode, patience=patience))
        lightning = build_trainer(trainer, callbacks=callbacks)  # seeds everything: the same run every time
        loaded = _dna_model(model)
        given = loaded.config.classes if isinstance(loaded, SequenceClassifier) and task != "classification" else None
        train = read_labelled(data.train, classes=given, task=task)
        if task == "classification" and len(train.classes) < 2:
            raise InputError(f"{data.train}: every row has the label {train.classes[0]!r}; a classifier needs two")
        backbone = loaded.backbone if isinstance(loaded, SequenceClassifier) else loaded
        is_ph = isinstance(backbone, Caduceus) and not backbone.config.rcps
        conjoin = is_ph if conjoin is None else conjoin
        classifier = _classifier(loaded, train.classes, task, pooling=pooling, conjoin=conjoin, dropout=dropout)
        classifier.backbone.gradient_checkpointing = trainer.gradient_checkpointing
        if freeze_backbone:
            classifier.backbone.requires_grad_(False)
        tokenizer, context = DNATokenizer(), backbone.context_length
        train_set = LabelledDataset(train, tokenizer=tokenizer, max_len=context, source=str(data.train))
        val_set = None
        if data.val is not None:
            val = read_labelled(data.val, classes=train.classes, task=task)
            val_set = LabelledDataset(val, tokenizer=tokenizer, max_len=context, source=str(data.val))
        batches = LabelledDataModule(train_set, val_set, batch_size=data.batch_size, seed=trainer.seed)
        rc_augment = is_ph if data.rc_augment is None else data.rc_augment
        finetuning = FinetuneTask(classifier, optimizer=optimizer, rc_augment=rc_augment)
        fit(lightning, finetuning, batches, resume=trainer.resume)
        best = callbacks[0].best_model_path if callbacks else ""
        if lightning.is_global_zero:
            if best:  # the weights of the best validation, not the last step's
                saved = torch.load(best, map_location="cpu", weights_only=True)
                finetuning.load_state_dict(saved["state_dict"])
                print(f"best {monitor} {float(callbacks[0].best_model_score):.4f} at step {saved['global_step']}")
            if patience is not None and callbacks[-1].stopped_epoch:
                print(f"stopped early at step {lightning.global_step}: {monitor} did not improve in {patience} checks")
            classifier.eval().save_pretrained(output)
            _report(lightning, output)


def convert(model: str, output: Path, *, filter_shift: float | None = None) -> None:
    """Convert a checkpoint to our format (config.json + model.safetensors).

    Args:
        model: a HyenaDNA HF or original (Lightning) directory or weights.ckpt, a Caduceus HF directory, ours, a
            preset or a Hub id.
        output: the directory to create (it must not exist, or be empty).
        filter_shift: HyenaDNA only: the filter modulation shift (default: 0.05, the released code's).
    """
    from longseq.core.io import check_not_overwriting, new_directory
    from longseq.core.registry import from_pretrained

    check_not_overwriting(output, model)
    overrides = {} if filter_shift is None else {"filter_shift": filter_shift}
    with new_directory(output):
        net = from_pretrained(model, **overrides)
        net.save_pretrained(output)
    params = sum(p.numel() for p in net.parameters())
    print(f"wrote {output} ({type(net).__name__}, {params:,} parameters)")


def main(argv: list[str] | None = None) -> int:
    commands = {
        "embed": embed,
        "predict": predict,
        "score": score,
        "pretrain": pretrain,
        "finetune": finetune,
        "convert": convert,
    }
    return run(commands, argv, prog="dna")


if __name__ == "__main__":
    sys.exit(main())
