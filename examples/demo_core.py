"""Demo step "core": a tiny hybrid LM (Mamba + sliding-window attention layers) learns the lambda phage genome.

Trains with `core.train` on the first 90% of the genome (loss shown as it falls; logs and checkpoints on disk),
plots the training and validation loss, saves the model in our format, reloads it with ``from_pretrained``
(same logits), and continues a stretch of the held-out 10% of the genome with ``generate`` (sampling).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

EXAMPLES = Path(__file__).parent
GENOME = EXAMPLES / "data" / "lambda_phage.fa.gz"  # NCBI RefSeq NC_001416.1, 48,502 bp
# Read when the step runs, so a test can shorten it.
SEQ_LEN = 256
BATCH_SIZE = 8
MAX_STEPS = 240


def read_genome() -> torch.Tensor:
    """The genome as DNA token ids (n,)."""
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tokenizer import DNATokenizer

    (record,) = read_records(GENOME)
    return torch.from_numpy(DNATokenizer().encode(record.seq))


def tiny_hybrid_lm():
    from longseq.core.lm import AttentionOptions, CausalLM, LMConfig
    from longseq.genomics.data.tokenizer import VOCAB_SIZE

    config = LMConfig(
        vocab_size=VOCAB_SIZE,
        d_model=64,
        n_layer=4,
        mixer=["mamba", "swa"],
        attention=AttentionOptions(num_heads=4, window=128, rotary_emb_dim=16),
    )
    return CausalLM(config)


def plot_losses(metrics_csv: Path, png: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Plot the logged train and validation losses; returns both as (step, loss) lists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longseq.core.io import atomic_output

    train, val = [], []
    with open(metrics_csv) as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss"):
                train.append((int(row["step"]), float(row["train/loss"])))
            if row.get("val/loss"):
                val.append((int(row["step"]), float(row["val/loss"])))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation (held-out 10%)")
    ax.axhline(math.log(4), color="gray", linestyle=":", label="uniform over A, C, G, T")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats/base)", title="tiny Mamba + SWA LM on lambda phage")
    ax.legend()
    fig.tight_layout()
    with atomic_output(png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return train, val


def run(out_dir: Path) -> None:
    # The model is tiny: on the shared 2-core machine a training step took 0.23 s of CPU with one thread and
    # 1.5 s with two (the per-token scan ops are too small to split), so this step runs on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_and_generate(out_dir)
    finally:
        torch.set_num_threads(threads)


def train_and_generate(out_dir: Path) -> None:
    from longseq import from_pretrained
    from longseq.core.train import (
        CausalLMTask,
        OptimizerConfig,
        TokenWindowDataModule,
        TrainerConfig,
        build_trainer,
        fit,
    )
    from longseq.genomics.data.tokenizer import DNATokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = read_genome()
    split = int(0.9 * tokens.numel())
    print(f"lambda phage: {tokens.numel():,} bp; training on the first {split:,}, validating on the rest")

    model = tiny_hybrid_lm()
    kinds = ", ".join(model.config.layer_kinds())
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters, layers: {kinds}")
    config = TrainerConfig(
        max_steps=MAX_STEPS,
        val_every_n_batches=min(40, MAX_STEPS),
        checkpoint_dir=str(out_dir / "checkpoints"),
        checkpoint_every_n_steps=min(80, MAX_STEPS),
        log_dir=str(out_dir / "logs"),
        run_name="core",
        log_every_n_steps=min(10, MAX_STEPS),
    )
    trainer = build_trainer(config)
    task = CausalLMTask(model, optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20, weight_decay=0.1))
    data = TokenWindowDataModule(tokens[:split], tokens[split:], seq_len=SEQ_LEN, batch_size=BATCH_SIZE)
    fit(trainer, task, data)

    train, val = plot_losses(Path(trainer.logger.log_dir) / "metrics.csv", out_dir / "loss.png")
    print(f"train loss {train[0][1]:.3f} at step {train[0][0]} -> {train[-1][1]:.3f} at step {train[-1][0]}")
    if val:
        print(f"validation loss {val[0][1]:.3f} -> {val[-1][1]:.3f}  (uniform over 4 bases: {math.log(4):.3f})")
    print(f"loss plot: {out_dir / 'loss.png'}")

    model.eval()
    model.save_pretrained(out_dir / "model")
    reloaded = from_pretrained(out_dir / "model").eval()
    window = tokens[split : split + SEQ_LEN][None]
    with torch.no_grad():
        same = torch.equal(model(window), reloaded(window))
    print(f"saved to {out_dir / 'model'}; reloaded with from_pretrained: logits identical = {same}")
    if not same:
        raise RuntimeError("the reloaded model computes different logits")

    prompt_len, new = 200, 60
    prompt = tokens[split : split + prompt_len][None]
    generated = reloaded.generate(prompt, max_new_tokens=new, do_sample=True, top_k=4, seed=0)[0, prompt_len:]
    truth = tokens[split + prompt_len : split + prompt_len + new]
    tokenizer = DNATokenizer()
    matches = int((generated == truth).sum())
    print(f"held-out prompt (last 40 of {prompt_len} bases): ...{tokenizer.decode(prompt[0, -40:])}")
    print(f"sampled continuation (top-4): {tokenizer.decode(generated)}")
    print(f"the genome says:              {tokenizer.decode(truth)}")
    print(f"{matches}/{new} bases match (chance is about {new // 4})")
