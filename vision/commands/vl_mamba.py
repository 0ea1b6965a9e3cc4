"""The VL-Mamba commands of the `vision` console script: make-vqa-data, train-vlm, vqa, eval-vqa.

Plain typed functions (jsonargparse builds the CLI from them). Every input is checked before work starts: bad input
raises `core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); an output never overwrites an
input, output directories are created only once the inputs pass, and files are written under a temporary name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from longseq.core.train import OptimizerConfig, TrainerConfig
from longseq.vision.vl_mamba.data_config import VQADataConfig


def make_vqa_data(
    output: Path,
    fashion_train: int = 3000,
    fashion_test: int = 1000,
    digits_test: int = 360,
    data_dir: Path | None = None,
    seed: int = 0,
) -> None:
    """Write a small VQA set from offline labelled images (Fashion-MNIST, scikit-learn digits) as LLaVA-style
    JSONL (train.jsonl, test.jsonl) plus PNG images.

    Args:
        output: the directory to write (new or empty).
        fashion_train, fashion_test: Fashion-MNIST images per split (each gets two questions); both 0: a digits-only
            set that needs nothing but scikit-learn.
        digits_test: digits held out for the test split (the rest train).
        data_dir: the directory holding Fashion-MNIST's four IDX files (not bundled).
        seed: which images.
    """
    from longseq.core.io import InputError, check_not_overwriting, new_directory
    from longseq.vision.vl_mamba.offline_data import build_offline_vqa

    check_not_overwriting(output, data_dir)
    if min(fashion_train, fashion_test, digits_test, seed) < 0:
        raise InputError("--fashion_train, --fashion_test, --digits_test and --seed must be >= 0")
    with new_directory(output):
        counts = build_offline_vqa(
            output,
            fashion_train=fashion_train,
            fashion_test=fashion_test,
            digits_test=digits_test,
            data_dir=data_dir,
            seed=seed,
        )
    print(f"{output}: {counts['train']} training and {counts['test']} test records")


def train_vlm(
    output: Path,
    data: VQADataConfig,
    model: str = "vl-mamba-tiny",
    trainer: TrainerConfig = TrainerConfig(max_steps=300, val_every_n_batches=100, limit_val_batches=4),  # noqa: B008
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, weight_decay=0.0, warmup_steps=30),  # noqa: B008
    stage: Literal["align", "instruct"] = "align",
    lm: str | None = None,
    vision_weights: Path | None = None,
    connector: Literal["preset", "mlp", "vss-mlp", "vss-l2"] = "preset",
    scan: Literal["preset", "bsm", "csm"] = "preset",
) -> None:
    """Train VL-Mamba for one stage on LLaVA-style JSONL data: align (connector only) then instruct (connector
    and language model); the vision tower stays frozen.

    Args:
        output: the directory for the trained model (our format, with tokenizer.json); new or empty.
        data: the records (--data.train file.jsonl, --data.val, --data.batch_size).
        model: a VL-Mamba checkpoint directory (e.g. the align stage's output) or a preset (vl-mamba-tiny,
            vl-mamba-siglip, vl-mamba-clip).
        trainer: length, checkpoints, logging, resume (default: 300 steps).
        optimizer: AdamW and the cosine schedule (default: lr 1e-3, 30 warm-up steps, no weight decay).
        stage: align or instruct.
        lm: for a preset: a pretrained Mamba LM (our / state-spaces / Hugging Face directory with tokenizer.json).
        vision_weights: for a preset: the vision tower's weights (a local timm / open_clip file).
        connector, scan: for a preset: the connector (mlp, vss-mlp, vss-l2) and its scan (bsm, csm); preset: the
            preset's own.
    """
    from longseq.core.io import InputError, check_not_overwriting, new_directory
    from longseq.core.train import build_trainer
    from longseq.vision.vl_mamba.data import read_jsonl
    from longseq.vision.vl_mamba.model import FAMILY
    from longseq.vision.vl_mamba.task import train_vl_mamba

    output = Path(output)
    check_not_overwriting(output, model, lm, vision_weights, data.train, data.val)
    trainer.check_outside(output)
    overrides = {name: value for name, value in (("connector", connector), ("scan", scan)) if value != "preset"}
    if Path(model).is_dir() and (lm or vision_weights or overrides):
        raise InputError("--lm, --vision_weights, --connector and --scan apply to presets, not to a checkpoint")
    if not Path(model).is_dir() and model not in FAMILY.presets:
        raise InputError(
            f"{model!r} is neither a VL-Mamba checkpoint directory nor a preset ({', '.join(FAMILY.presets)})"
        )
    texts = [text for record in read_jsonl(data.train) for _, text in record.conversations]
    lightning = build_trainer(trainer)  # seeds everything, so that a fresh connector starts the same in every run
    net, tokenizer = _vl_model(model, texts, lm=lm, vision_weights=vision_weights, **overrides)
    with new_directory(output):
        metrics = train_vl_mamba(
            lightning, net, tokenizer, data, stage=stage, optimizer=optimizer, resume=trainer.resume, seed=trainer.seed
        )
        net.save_pretrained(output)
        tokenizer.save(output)
    print(f"{stage}: validation loss {metrics['val_loss']:.4f} -> {output}")


def _vl_model(model: str, texts: list[str], *, lm: str | None, vision_weights: Path | None, **overrides):
    """(VLMamba, tokenizer) to train: our checkpoint directory, or a preset assembled from a pretrained LM (with its
    tokenizer.json) and vision weights; a preset without an LM gets a word tokenizer over ``texts``."""
    import dataclasses

    from longseq.core.checkpoint import CheckpointError
    from longseq.vision.vl_mamba.model import FAMILY, VLMamba
    from longseq.vision.vl_mamba.tokenizer import WordTokenizer, load_tokenizer

    if Path(model).is_dir():
        return VLMamba.from_pretrained(model), load_tokenizer(model)
    config = dataclasses.replace(FAMILY.presets[model], **overrides)
    if lm is not None:
        tokenizer = load_tokenizer(lm)
    else:
        tokenizer = WordTokenizer.build(texts + ["question: answer:"])
        config = dataclasses.replace(config, lm=dataclasses.replace(config.lm, vocab_size=tokenizer.vocab_size))
    net = VLMamba.from_parts(config, lm=lm, vision_weights=vision_weights)
    if tokenizer.vocab_size > net.config.lm.padded_vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens; the LM's vocabulary {net.config.lm.padded_vocab_size}"
        )
    return net, tokenizer


def vqa(
    model: Path,
    image: Path,
    question: str,
    device: str = "cpu",
    max_new_tokens: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    output: Path | None = None,
    history: Path | None = None,
) -> None:
    """Answer a question about an image with a trained VL-Mamba model (printed, and written to ``output``).

    Args:
        model: a VL-Mamba checkpoint directory (train-vlm's output).
        image: the image file (PNG, JPEG, ...).
        question: the question.
        device: where to run (cpu, cuda, cuda:1, mps).
        max_new_tokens: the longest answer in tokens (the image, the question and the answer fit the model's
            context).
        do_sample: sample (else greedy), with temperature, top_k (0 = off) and top_p (1 = off).
        seed: the sampling seed.
        output: a text file for the answer (None: stdout only).
        history: a conversation file (JSON list of {"from": "human"|"gpt", "value": text} turns, LLaVA's
            "conversations"): its exchanges come before the question, and the new exchange is appended to it, so
            that repeated calls hold a multi-turn conversation about one image. Created if it does not exist.
    """
    import torch

    from longseq.core.io import InputError, atomic_output, check_not_overwriting, resolve_device
    from longseq.vision.vl_mamba.data import encode_follow_up, load_image
    from longseq.vision.vl_mamba.model import VLMamba
    from longseq.vision.vl_mamba.tokenizer import load_tokenizer

    if not temperature > 0 or top_k < 0 or not 0 < top_p <= 1 or seed < 0:
        raise InputError("temperature must be positive, top_k >= 0, top_p in (0, 1] and seed >= 0")
    target = resolve_device(device)
    if not Path(model).is_dir():
        raise InputError(f"no such model directory: {model}")
    if output is not None:
        check_not_overwriting(output, image, model)
    turns = _read_history(history) if history is not None else []
    net = VLMamba.from_pretrained(model).to(target)
    tokenizer = load_tokenizer(model)
    pairs = [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
    ids = torch.tensor([encode_follow_up(tokenizer, pairs, question)], device=target)
    pixels = load_image(image, **net.image_config())[None].to(target)
    tokens = net.generate(
        pixels,
        ids,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_token_id=tokenizer.eos_id,
        seed=seed,
    )
    answer = tokenizer.decode(tokens[0].tolist())
    print(answer)
    if output is not None:
        with atomic_output(output) as tmp:
            tmp.write_text(answer + "\n")
    if history is not None:
        import json

        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        with atomic_output(history) as tmp:
            tmp.write_text(json.dumps(turns, indent=1) + "\n")


def _read_history(path: Path) -> list[dict]:
    """A conversation file's turns (none when it does not exist yet); anything malformed is one line."""
    import json

    from longseq.core.io import InputError

    path = Path(path)
    if not path.exists():
        return []
    try:
        turns = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"--history {path}: not a JSON conversation ({err})") from None
    valid = (
        isinstance(turns, list)
        and len(turns) % 2 == 0
        and all(
            isinstance(t, dict) and t.get("from") == ("human", "gpt")[i % 2] and isinstance(t.get("value"), str)
            for i, t in enumerate(turns)
        )
    )
    if not valid:
        raise InputError(
            f'--history {path}: expected a list of alternating {{"from": "human"|"gpt", "value": text}} turns'
        )
    return turns


def eval_vqa(
    model: Path,
    data: Path,
    output: Path,
    images: Path | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    limit: int = 0,
    device: str = "cpu",
) -> None:
    """Score a trained VL-Mamba model on a VQA set: greedy answers in batches, exact match and VQA accuracy overall
    and per question type; predictions written as JSONL.

    Args:
        model: a VL-Mamba checkpoint directory (train-vlm's output).
        data: the test JSONL (LLaVA records; make-vqa-data writes test.jsonl). Each record's first question is
            asked; its gpt answer (and a VQAv2 record's ``answers``) are the references; ``question_type`` (or
            ``kind``) groups the scores.
        output: the directory to write (new or empty): predictions.jsonl and metrics.json.
        images: the directory the records' relative image paths start from (default: the JSONL's).
        batch_size: questions answered together (one prompt length per batch).
        max_new_tokens: the longest answer in tokens.
        limit: score only the first n records (0: all).
        device: where to run (cpu, cuda, cuda:1, mps).
    """
    import dataclasses
    import json

    from longseq.core.io import InputError, check_not_overwriting, new_directory, resolve_device
    from longseq.vision.vl_mamba.data import read_jsonl
    from longseq.vision.vl_mamba.evaluate import predict, score
    from longseq.vision.vl_mamba.model import VLMamba
    from longseq.vision.vl_mamba.tokenizer import load_tokenizer

    if batch_size < 1 or max_new_tokens < 1 or limit < 0:
        raise InputError(
            f"--batch_size and --max_new_tokens must be >= 1, --limit >= 0; got {batch_size}, {max_new_tokens}, {limit}"
        )
    if not Path(model).is_dir():
        raise InputError(f"no such model directory: {model}")
    check_not_overwriting(output, model, data, images)
    if Path(output).exists() and (not Path(output).is_dir() or any(Path(output).iterdir())):
        raise InputError(f"--output {output} already exists and is not an empty directory")
    target = resolve_device(device)
    records = read_jsonl(data, images)[: limit or None]
    missing = [r.image for r in records if not Path(r.image).is_file()]
    if missing:
        raise InputError(
            f"{data}: {len(missing)} record image(s) missing, e.g. {missing[0]} (--images sets their folder)"
        )
    net = VLMamba.from_pretrained(model).to(target)
    tokenizer = load_tokenizer(model)
    answers = predict(net, tokenizer, records, batch_size=batch_size, max_new_tokens=max_new_tokens, device=target)
    predictions, metrics = score(records, answers)
    with new_directory(output):
        lines = "".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in predictions)
        (Path(output) / "predictions.jsonl").write_text(lines)
        record = {"model": str(model), "data": str(data), **metrics}
        (Path(output) / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    overall = metrics["overall"]
    print(
        f"{model} on {data}: exact match {overall['exact_match']:.4f}, VQA accuracy {overall['vqa_accuracy']:.4f} "
        f"over {overall['count']} questions"
    )
    for kind, m in metrics["per_question_type"].items():
        print(f"  {kind}: exact match {m['exact_match']:.4f}, VQA accuracy {m['vqa_accuracy']:.4f} ({m['count']})")
