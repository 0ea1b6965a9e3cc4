"""VL-Mamba on a small real VQA set (Fashion-MNIST + scikit-learn digits, `vision make-vqa-data`): answer accuracy
of each connector (MLP, VSS-MLP and VSS-L2 with BSM or CSM) next to a linear probe on the same frozen encoder
features. Everything is trained here on a CPU, as in the paper's recipe at toy scale:

    0. an image encoder (the vl-mamba-tiny ViT: 28 px, patch 4, dim 64, depth 4) pre-trained as a 20-way
       classifier on the training images (stands in for SigLIP), then frozen;
       a 2-layer Mamba LM pre-trained on the training questions and answers, text only (stands in for Mamba-2.8B);
    1. align: the connector alone;  2. instruct: connector + LM.

    python -m benchmarks.vision_vqa prepare        # data, encoder, LM, linear probe
    python -m benchmarks.vision_vqa train --connector vss-l2 --scan bsm   (one per variant)
    python -m benchmarks.vision_vqa report                           # table + benchmarks/plots/vision_vqa.png
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "results" / "models" / "vqa"
RESULTS = ROOT / "results"
VARIANTS = [("mlp", "bsm"), ("vss-mlp", "bsm"), ("vss-mlp", "csm"), ("vss-l2", "bsm"), ("vss-l2", "csm")]
KINDS = ("item", "category", "digit", "parity")


def _kinds(path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in path.read_text().splitlines() if line.strip()]


def _image_labels(records) -> tuple[list[Path], list[int]]:
    """The distinct images of the records and a 20-way label (Fashion-MNIST 0-9, digits 10-19)."""
    from longseq.vision.vl_mamba.offline_data import DIGIT_WORDS, FASHION_ITEMS

    images = {}
    for r in records:
        if r.question == "what item is this?":
            images[r.image] = FASHION_ITEMS.index(r.answer)
        elif r.question == "which digit is this?":
            images[r.image] = 10 + DIGIT_WORDS.index(r.answer)
    return list(images), list(images.values())


def _trainer(name: str, steps: int, seed: int = 0):
    from longseq.core.train import TrainerConfig

    return TrainerConfig(
        max_steps=steps, val_every_n_batches=max(steps // 4, 1), limit_val_batches=4, log_dir=str(WORK / "logs"),
        run_name=name, log_every_n_steps=25, seed=seed, accelerator="cpu", devices=1,
    )  # fmt: skip


def _pretrain_encoder(records, steps: int) -> Path:
    """The vl-mamba-tiny vision tower as a 20-way classifier on the training images; saved as a timm state dict."""
    import lightning as L
    import timm
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader, TensorDataset

    from longseq.core.train import OptimizerConfig, ResumableDataLoader, build_trainer
    from longseq.vision.local_mamba.classify import train_classifier
    from longseq.vision.vl_mamba.data import load_image
    from longseq.vision.vl_mamba.model import PRESETS

    tower = PRESETS["vl-mamba-tiny"].vision
    model = timm.create_model(tower.arch, num_classes=20, **tower.timm_kwargs())
    cfg = model.pretrained_cfg
    paths, labels = _image_labels(records)
    size = (tower.image_size, tower.image_size)
    x = torch.stack([load_image(p, size=size, mean=cfg["mean"], std=cfg["std"]) for p in paths])
    y = torch.tensor(labels)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = TensorDataset(x[order[256:]], y[order[256:]]), TensorDataset(x[order[:256]], y[order[:256]])

    class Images(L.LightningDataModule):
        def train_dataloader(self):
            return ResumableDataLoader(train, batch_size=64)

        def val_dataloader(self):
            return DataLoader(val, batch_size=256)

        def test_dataloader(self):
            return DataLoader(val, batch_size=256)

    metrics = train_classifier(
        build_trainer(_trainer("encoder", steps)), model, Images(), optimizer=OptimizerConfig(lr=1e-3, warmup_steps=50)
    )
    path = WORK / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}, str(path))
    (WORK / "encoder.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def _pretrain_lm(records, tokenizer, steps: int) -> Path:
    """The vl-mamba-tiny LM on the training question / answer text alone; saved with its tokenizer."""
    import dataclasses

    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from longseq.core.lm import CausalLM
    from longseq.core.train import CausalLMTask, OptimizerConfig, ResumableDataLoader, build_trainer, fit
    from longseq.vision.vl_mamba.data import encode_conversation
    from longseq.vision.vl_mamba.model import IGNORE_INDEX, PRESETS

    rows = [encode_conversation(tokenizer, r.conversations)[0][1:] for r in records]  # the text, image dropped
    length = max(len(ids) for ids in rows)
    inputs = torch.full((len(rows), length), tokenizer.pad_id)
    targets = torch.full((len(rows), length), IGNORE_INDEX)
    for i, ids in enumerate(rows):
        inputs[i, : len(ids)] = torch.tensor(ids)
        targets[i, : len(ids) - 1] = torch.tensor(ids[1:])  # every next text token: a language prior
    data = TensorDataset(inputs, targets)

    class Text(L.LightningDataModule):
        def train_dataloader(self):
            return ResumableDataLoader(data, batch_size=64)

        def val_dataloader(self):
            return DataLoader(torch.utils.data.Subset(data, range(256)), batch_size=256)

    config = dataclasses.replace(PRESETS["vl-mamba-tiny"].lm, vocab_size=tokenizer.vocab_size)
    lm = CausalLM(config)
    fit(build_trainer(_trainer("lm", steps)), CausalLMTask(lm, optimizer=OptimizerConfig(lr=2e-3, warmup_steps=30)),
        Text())  # fmt: skip
    path = WORK / "lm"
    lm.save_pretrained(path)
    tokenizer.save(path)
    return path


def _probe(records_train, records_test, encoder: Path) -> dict[str, float]:
    """Logistic regression per question kind on mean-pooled frozen features (the connector's input)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from longseq.vision.vl_mamba.data import load_image
    from longseq.vision.vl_mamba.model import PRESETS, build_vision_tower

    tower = build_vision_tower(PRESETS["vl-mamba-tiny"].vision, encoder).eval()
    cfg = tower.pretrained_cfg
    size = tuple(tower.patch_embed.img_size)

    paths = sorted({r.image for r in records_train + records_test})
    x = torch.stack([load_image(p, size=size, mean=cfg["mean"], std=cfg["std"]) for p in paths])
    with torch.no_grad():
        pooled = [
            tower.forward_intermediates(chunk, indices=1, output_fmt="NCHW", intermediates_only=True)[0].mean(
                dim=(2, 3)
            )
            for chunk in x.split(256)
        ]
    table = dict(zip(paths, torch.cat(pooled).numpy()))

    def features(records):
        return np.stack([table[r.image] for r in records])

    results, correct, total = {}, 0, 0
    for kind_question in sorted({r.question for r in records_train}):
        train = [r for r in records_train if r.question == kind_question]
        test = [r for r in records_test if r.question == kind_question]
        probe = LogisticRegression(max_iter=2000).fit(features(train), [r.answer for r in train])
        hits = int((probe.predict(features(test)) == np.array([r.answer for r in test])).sum())
        results[kind_question] = hits / len(test)
        correct, total = correct + hits, total + len(test)
    results["overall"] = correct / total
    return results


def prepare(encoder_steps: int = 600, lm_steps: int = 300) -> None:
    """Build the data, pre-train the encoder and the LM, and fit the linear probe."""
    import torch

    from longseq.vision.vl_mamba.data import read_jsonl
    from longseq.vision.vl_mamba.offline_data import build_offline_vqa
    from longseq.vision.vl_mamba.tokenizer import WordTokenizer

    torch.manual_seed(0)
    WORK.mkdir(parents=True, exist_ok=True)
    counts = build_offline_vqa(WORK / "data")
    train, test = read_jsonl(WORK / "data" / "train.jsonl"), read_jsonl(WORK / "data" / "test.jsonl")
    tokenizer = WordTokenizer.build([t for r in train for _, t in r.conversations] + ["question: answer:"])
    encoder = _pretrain_encoder(train, encoder_steps)
    _pretrain_lm(train, tokenizer, lm_steps)
    probe = _probe(train, test, encoder)
    summary = {"records": counts, "encoder": json.loads((WORK / "encoder.json").read_text()), "probe": probe}
    (RESULTS / "vision_vqa_probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def train(
    connector: Literal["mlp", "vss-mlp", "vss-l2"],
    scan: Literal["bsm", "csm"] = "bsm",
    align_steps: int = 300,
    instruct_steps: int = 300,
    batch_size: int = 32,
) -> None:
    """Both stages for one connector, then greedy answers on the test records."""
    import dataclasses
    import time

    import torch

    from longseq.core.train import OptimizerConfig, build_trainer
    from longseq.vision.vl_mamba.data import read_jsonl
    from longseq.vision.vl_mamba.data_config import VQADataConfig
    from longseq.vision.vl_mamba.model import PRESETS, VLMamba
    from longseq.vision.vl_mamba.task import answer_records, train_vl_mamba
    from longseq.vision.vl_mamba.tokenizer import load_tokenizer

    torch.manual_seed(0)
    name = f"{connector}-{scan}"
    data = VQADataConfig(train=str(WORK / "data" / "train.jsonl"), batch_size=batch_size)
    config = dataclasses.replace(PRESETS["vl-mamba-tiny"], connector=connector, scan=scan)
    model = VLMamba.from_parts(config, lm=WORK / "lm", vision_weights=WORK / "encoder.safetensors")
    tokenizer = load_tokenizer(WORK / "lm")
    start = time.perf_counter()
    losses = {}
    for stage, steps, lr in (("align", align_steps, 1e-3), ("instruct", instruct_steps, 5e-4)):
        optimizer = OptimizerConfig(lr=lr, weight_decay=0.0, warmup_steps=30)
        trainer = build_trainer(_trainer(f"{name}-{stage}", steps))
        losses[stage] = train_vl_mamba(trainer, model, tokenizer, data, stage=stage, optimizer=optimizer)["val_loss"]
    seconds = time.perf_counter() - start
    test = read_jsonl(WORK / "data" / "test.jsonl")
    kinds = _kinds(WORK / "data" / "test.jsonl")
    answers = answer_records(model, tokenizer, test)
    hits = defaultdict(list)
    for record, kind, answer in zip(test, kinds, answers):
        hits[kind].append(tokenizer.encode(answer) == tokenizer.encode(record.answer))
    accuracy = {k: sum(v) / len(v) for k, v in hits.items()}
    accuracy["overall"] = sum(sum(v) for v in hits.values()) / len(test)
    result = {
        "connector": connector,
        "scan": scan,
        "accuracy": accuracy,
        "val_loss": losses,
        "connector_params": sum(p.numel() for p in model.connector.parameters()),
        "train_seconds": seconds,
        "threads": torch.get_num_threads(),
        "examples": [{"question": r.question, "gold": r.answer, "answer": a} for r, a in zip(test[:6], answers)],
    }
    (RESULTS / f"vision_vqa_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def report() -> None:
    """Markdown table (accuracy per question kind) and a bar plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = json.loads((RESULTS / "vision_vqa_probe.json").read_text())
    questions = {
        "item": "what item is this?",
        "category": "is this clothing, footwear or a bag?",
        "digit": "which digit is this?",
        "parity": "is the digit even or odd?",
    }
    rows = [("linear probe (frozen features)", {k: probe["probe"][q] for k, q in questions.items()}
             | {"overall": probe["probe"]["overall"]}, "-")]  # fmt: skip
    for connector, scan in VARIANTS:
        path = RESULTS / f"vision_vqa_{connector}-{scan}.json"
        if path.is_file():
            r = json.loads(path.read_text())
            label = connector.upper() if connector == "mlp" else f"{connector.upper()} ({scan.upper()})"
            rows.append((label, r["accuracy"], f"{r['connector_params'] / 1e3:.0f}k"))
    print("| model | connector params | item | category | digit | parity | overall |")
    print("|---|---|---|---|---|---|---|")
    for label, acc, params in rows:
        cells = " | ".join(f"{100 * acc[k]:.1f} %" for k in (*KINDS, "overall"))
        print(f"| {label} | {params} | {cells} |")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(rows)
    for i, (label, acc, _) in enumerate(rows):
        ax.bar([j + i * width for j in range(5)], [100 * acc[k] for k in (*KINDS, "overall")], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(5)], [*KINDS, "overall"])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("VL-Mamba connectors vs a linear probe, offline VQA set (CPU)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    (ROOT / "plots").mkdir(exist_ok=True)
    fig.savefig(ROOT / "plots" / "vision_vqa.png", dpi=120)
    print(f"plot: {ROOT / 'plots' / 'vision_vqa.png'}")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI([prepare, train, report], as_positional=False)
