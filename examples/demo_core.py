"""Demo step "core": a tiny hybrid LM (Mamba + sliding-window attention layers) learns to recall DNA it has read.

The data are tandem repeats made from the lambda phage genome: stretches of 100 bases, each followed by its copy.
Trains with `core.train` on stretches of the first 90% of the genome (loss shown as it falls; logs and checkpoints
on disk), plots the training and validation loss, saves the model in our format and reloads it with
``from_pretrained`` (same logits). Then, on the held-out 10%: the cross-entropy of new bases and of repeated ones
next to a 3-mer model fitted to the training part, and ``generate`` continuing a held-out repeat.

What a short CPU run learns here: recall. The attention layers learn to look 100 bases back and copy, which no
k-mer statistics can do; a new base is another matter: 48 kb of genome teach a model no more than a 3-mer table.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
import torch.nn.functional as F

EXAMPLES = Path(__file__).parent
GENOME = EXAMPLES / "data" / "lambda_phage.fa.gz"  # NCBI RefSeq NC_001416.1, 48,502 bp
# Read when the step runs, so a test can shorten it.
STRETCH = 100  # bases, then their copy: windows of 2 x STRETCH (the attention window, 128, reaches the copy's source)
NEW_BASES = 60  # generated at the end of a held-out repeat
BATCH_SIZE = 8
MAX_STEPS = 240


def read_genome() -> torch.Tensor:
    """The genome as DNA token ids (n,)."""
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tokenizer import DNATokenizer

    (record,) = read_records(GENOME)
    return torch.from_numpy(DNATokenizer().encode(record.seq))


def tandem_repeats(tokens: torch.Tensor, every: int) -> torch.Tensor:
    """Stretches of ``STRETCH`` tokens starting every ``every`` tokens, each followed by its copy, concatenated."""
    starts = range(0, tokens.numel() - STRETCH + 1, every)
    return torch.cat([tokens[s : s + STRETCH].repeat(2) for s in starts])


def kmer_cross_entropy(train: torch.Tensor, test: torch.Tensor, k: int = 3) -> float:
    """Cross-entropy (nats per token) on ``test`` of an order-k Markov model fitted to ``train`` (add-one counts)."""
    symbols, ids = torch.unique(torch.cat([train, test]), return_inverse=True)
    n = len(symbols)

    def context_codes(t: torch.Tensor) -> torch.Tensor:  # the k tokens before each position, as one number
        code = torch.zeros(t.numel() - k, dtype=torch.long)
        for j in range(k):
            code = code * n + t[j : t.numel() - k + j]
        return code

    train_ids, test_ids = ids[: train.numel()], ids[train.numel() :]
    counts = torch.ones(n**k, n)
    counts.index_put_((context_codes(train_ids), train_ids[k:]), torch.ones(train_ids.numel() - k), accumulate=True)
    log_probs = (counts / counts.sum(-1, keepdim=True)).log()
    return -log_probs[context_codes(test_ids), test_ids[k:]].mean().item()


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
        ax.plot(*zip(*val), "o-", label="validation (held-out 10%: new and repeated bases)")
    ax.axhline(math.log(4), color="gray", linestyle=":", label="uniform over A, C, G, T")
    ax.axhline(math.log(4) / 2, color="gray", linestyle="--", label="uniform on new bases, exact recall of repeats")
    ax.set(
        xlabel="optimizer step",
        ylabel="cross-entropy (nats/base)",
        title="tiny Mamba + SWA LM, lambda phage tandem repeats",
    )
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
    train_tokens = tandem_repeats(tokens[:split], every=STRETCH // 4)
    val_tokens = tandem_repeats(tokens[split:], every=STRETCH)
    print(
        f"lambda phage: {tokens.numel():,} bp; tandem repeats of {STRETCH}-base stretches: "
        f"{train_tokens.numel() // (2 * STRETCH):,} from the first {split:,} bp for training, "
        f"{val_tokens.numel() // (2 * STRETCH):,} from the rest for validation"
    )

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
    data = TokenWindowDataModule(train_tokens, val_tokens, seq_len=2 * STRETCH, batch_size=BATCH_SIZE)
    fit(trainer, task, data)

    train, val = plot_losses(Path(trainer.logger.log_dir) / "metrics.csv", out_dir / "loss.png")
    print(f"train loss {train[0][1]:.3f} at step {train[0][0]} -> {train[-1][1]:.3f} at step {train[-1][0]}")
    if val:
        print(f"validation loss {val[0][1]:.3f} -> {val[-1][1]:.3f}  (uniform over 4 bases: {math.log(4):.3f})")
    print(f"loss plot: {out_dir / 'loss.png'}")

    model.eval()
    model.save_pretrained(out_dir / "model")
    reloaded = from_pretrained(out_dir / "model").eval()
    repeats = val_tokens.view(-1, 2 * STRETCH)
    with torch.no_grad():
        logits = model(repeats[:, :-1])
        same = torch.equal(logits, reloaded(repeats[:, :-1]))
    print(f"saved to {out_dir / 'model'}; reloaded with from_pretrained: logits identical = {same}")
    if not same:
        raise RuntimeError("the reloaded model computes different logits")

    nll = F.cross_entropy(logits.transpose(1, 2), repeats[:, 1:], reduction="none")
    baseline = kmer_cross_entropy(tokens[:split], tokens[split:])
    print(f"held-out cross-entropy (nats/base): new bases {nll[:, : STRETCH - 1].mean():.3f}, repeated bases "
          f"{nll[:, STRETCH:].mean():.3f}; a 3-mer model fitted to the training part: {baseline:.3f} on either "
          f"(it sees 3 bases back); uniform: {math.log(4):.3f}")  # fmt: skip

    repeat = repeats[0]
    prompt_len = 2 * STRETCH - NEW_BASES
    generated = reloaded.generate(repeat[None, :prompt_len], max_new_tokens=NEW_BASES)[0, prompt_len:]
    truth = repeat[prompt_len:]
    tokenizer = DNATokenizer()
    matches = int((generated == truth).sum())
    print(f"a held-out stretch and the start of its repeat (last 40 of {prompt_len} bases): "
          f"...{tokenizer.decode(repeat[prompt_len - 40 : prompt_len])}")  # fmt: skip
    print(f"greedy continuation:  {tokenizer.decode(generated)}")
    print(f"the stretch says:     {tokenizer.decode(truth)}")
    print(f"{matches}/{NEW_BASES} bases recalled (chance is about {NEW_BASES // 4})")
