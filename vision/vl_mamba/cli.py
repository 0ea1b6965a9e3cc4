"""The VL-Mamba commands of the `vision` console script: make-vqa-data, train-vlm, vqa.

Plain typed functions (jsonargparse builds the CLI from them); heavy imports happen inside. Bad input raises
`core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); outputs are written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the CLI reads these annotations; importing them for real would load lightning at --help
    from longseq.core.train import OptimizerConfig, TrainerConfig
    from longseq.vision.vl_mamba.task import VQADataConfig


def make_vqa_data(
    out: Path,
    fashion_train: int = 3000,
    fashion_test: int = 1000,
    digits_test: int = 360,
    data_dir: Path | None = None,
    seed: int = 0,
) -> None:
    """Write a small VQA set from offline labelled images (Fashion-MNIST, scikit-learn digits) as LLaVA-style
    JSONL (train.jsonl, test.jsonl) plus PNG images.

    Args:
        out: the directory to write.
        fashion_train, fashion_test: Fashion-MNIST images per split (each gets two questions).
        digits_test: digits held out for the test split (the rest train).
        data_dir: the directory holding Fashion-MNIST's four IDX files (not bundled).
        seed: which images.
    """
    from longseq.vision.vl_mamba.offline_data import build_offline_vqa

    counts = build_offline_vqa(
        out, fashion_train=fashion_train, fashion_test=fashion_test, digits_test=digits_test, data_dir=data_dir,
        seed=seed,
    )  # fmt: skip
    print(f"{out}: {counts['train']} training and {counts['test']} test records")


def load_vl_model(
    model: str,
    *,
    data: str | None = None,
    lm: str | None = None,
    vision_weights: str | None = None,
    connector: str | None = None,
    scan: str | None = None,
):
    """(VLMamba, tokenizer): our checkpoint directory, or a preset assembled with an optional pretrained LM
    (its directory's tokenizer.json) and vision weights; without an LM, a word tokenizer built from ``data``."""
    import dataclasses

    from longseq.core.checkpoint import CheckpointError
    from longseq.core.io import InputError
    from longseq.vision.vl_mamba.data import read_jsonl
    from longseq.vision.vl_mamba.model import PRESETS, VLMamba
    from longseq.vision.vl_mamba.tokenizer import WordTokenizer, load_tokenizer

    path = Path(model)
    if path.is_dir():
        if lm or vision_weights or connector or scan:
            raise InputError("--lm, --vision_weights, --connector and --scan apply to presets, not to a checkpoint")
        return VLMamba.from_pretrained(path), load_tokenizer(path)
    if model not in PRESETS:
        raise InputError(f"{model!r} is neither a VL-Mamba checkpoint directory nor a preset ({', '.join(PRESETS)})")
    overrides = {k: v for k, v in {"connector": connector, "scan": scan}.items() if v is not None}
    config = dataclasses.replace(PRESETS[model], **overrides)
    if lm is not None:
        tokenizer = load_tokenizer(lm)
    else:
        if data is None:
            raise InputError("a preset without --lm needs training data to build its vocabulary")
        texts = [text for record in read_jsonl(data) for _, text in record.conversations]
        tokenizer = WordTokenizer.build(texts + ["question: answer:"])
        config = dataclasses.replace(config, lm=dataclasses.replace(config.lm, vocab_size=tokenizer.vocab_size))
    net = VLMamba.from_parts(config, lm=lm, vision_weights=vision_weights)
    if tokenizer.vocab_size > net.config.lm.padded_vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens; the LM's vocabulary {net.config.lm.padded_vocab_size}"
        )
    return net, tokenizer


def train_vlm(
    data: VQADataConfig,
    out: Path,
    stage: Literal["align", "instruct"] = "align",
    model: str = "vl-mamba-tiny",
    lm: str | None = None,
    vision_weights: Path | None = None,
    connector: Literal["mlp", "vss-mlp", "vss-l2"] | None = None,
    scan: Literal["bsm", "csm"] | None = None,
    trainer: TrainerConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    resume: str | None = None,
) -> None:
    """Train VL-Mamba for one stage on LLaVA-style JSONL data: align (connector only) then instruct (connector
    and language model); the vision tower stays frozen.

    Args:
        data: the records (--data.train file.jsonl, --data.val, --data.batch_size).
        out: the directory for the trained model (our format, with tokenizer.json).
        stage: align or instruct.
        model: a VL-Mamba checkpoint directory (e.g. the align stage's output) or a preset (vl-mamba-tiny,
            vl-mamba-siglip, vl-mamba-clip).
        lm: for a preset: a pretrained Mamba LM (our / state-spaces / Hugging Face directory with tokenizer.json).
        vision_weights: for a preset: the vision tower's weights (a local timm / open_clip file).
        connector, scan: for a preset: the connector (mlp, vss-mlp, vss-l2) and its scan (bsm, csm).
        trainer: length, checkpoints, logging (default: 300 steps).
        optimizer: AdamW and the cosine schedule (default: lr 1e-3, 30 warm-up steps, no decay on 1-D weights).
        resume: "last" or a .ckpt file (needs --trainer.checkpoint_dir).
    """
    from longseq.core.io import InputError
    from longseq.core.train import OptimizerConfig, TrainerConfig
    from longseq.vision.vl_mamba.task import train_vl_mamba

    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    net, tokenizer = load_vl_model(
        model, data=data.train, lm=lm, vision_weights=vision_weights, connector=connector, scan=scan
    )
    trainer = trainer or TrainerConfig(max_steps=300, val_every_n_batches=100, limit_val_batches=4)
    optimizer = optimizer or OptimizerConfig(lr=1e-3, weight_decay=0.0, warmup_steps=30)
    metrics = train_vl_mamba(net, tokenizer, data, stage=stage, trainer=trainer, optimizer=optimizer, resume=resume)
    net.save_pretrained(out)
    tokenizer.save(out)
    print(f"{stage}: validation loss {metrics['val_loss']:.4f} -> {out}")


def vqa(
    model: Path,
    image: Path,
    question: str,
    max_new_tokens: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> None:
    """Answer a question about an image with a trained VL-Mamba model.

    Args:
        model: a VL-Mamba checkpoint directory (train-vlm's output).
        image: the image file (PNG, JPEG, ...).
        question: the question.
        max_new_tokens: the longest answer in tokens.
        do_sample: sample (else greedy), with temperature, top_k (0 = off) and top_p (1 = off).
        seed: the sampling seed.
    """
    import torch

    from longseq.core.io import InputError
    from longseq.vision.vl_mamba.data import encode_prompt, load_image
    from longseq.vision.vl_mamba.model import VLMamba
    from longseq.vision.vl_mamba.tokenizer import load_tokenizer

    if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
        raise InputError("temperature must be positive, top_k >= 0 and top_p in (0, 1]")
    if not Path(model).is_dir():
        raise InputError(f"no such model directory: {model}")
    net = VLMamba.from_pretrained(model).eval()
    tokenizer = load_tokenizer(model)
    ids = torch.tensor([encode_prompt(tokenizer, question)])
    pixels = load_image(image, **net.image_config())[None]
    tokens = net.generate(
        pixels, ids, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
        top_p=top_p, eos_token_id=tokenizer.eos_id, seed=seed,
    )  # fmt: skip
    print(tokenizer.decode(tokens[0].tolist()))
