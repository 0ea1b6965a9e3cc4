"""Fashion-MNIST on a CPU: a small LocalVim against a timm ViT of the same size and against the same LocalVim
with other scans (Vim's bidirectional row scan; VMamba's 4-direction cross scan; directions searched here).

Every variant gets the same data (the 60k training images; the official 10k test set is the validation split),
batch size, optimizer, schedule and number of steps, through `vision train-classifier`'s timm pipeline without
augmentation. Fashion-MNIST is not bundled: write it as an ImageFolder first (its four IDX files in IDX):
``vision make-image-folder --source fashion-mnist --data_dir IDX --output DIR``. Run each variant as its own long
job, then the report (the short runs recorded in benchmarks/RESULTS.md used --steps 200 --batch_size 32
--val_every 100, with the in-memory pipeline this file used before the ImageFolder one):

    python -m benchmarks.vision_fmnist train --variant local --root DIR     # also vim, cross, vit
    python -m benchmarks.vision_fmnist search --root DIR          # supernet -> searched directions
    python -m benchmarks.vision_fmnist train --variant searched --root DIR
    python -m benchmarks.vision_fmnist report                            # table + benchmarks/plots/

Results go to benchmarks/results/vision_fmnist_<variant>.json (with the training curve from the CSV log); the
trained weights to benchmarks/results/models/ (the ViT is the frozen image encoder of benchmarks/vision_vqa.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SEARCHED = RESULTS / "vision_fmnist_searched_config.json"
VARIANTS = ("local", "vim", "cross", "searched", "vit")
LABELS = {
    "local": "LocalVim, local scans (h, h_flip, w2, w2_flip)",
    "vim": "same model, Vim's scan (h, h_flip)",
    "cross": "same model, VMamba's cross scan (h, v, h_flip, v_flip)",
    "searched": "same model, directions searched on Fashion-MNIST",
    "vit": "timm ViT (dim 64, depth 4, 4 heads)",
}


def _model(variant: str):
    import timm

    import longseq
    from longseq.vision.local_mamba.convert import named_architecture
    from longseq.vision.local_mamba.local_vim import LocalVim

    if variant == "vit":
        return timm.create_model(
            "vit_tiny_patch16_224", img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=4,
            num_heads=4,
        )  # fmt: skip
    directions = {
        "local": [["h", "h_flip", "w2", "w2_flip"]] * 4,
        "vim": [["h", "h_flip"]] * 4,
        "cross": [["h", "v", "h_flip", "v_flip"]] * 4,
    }
    if variant == "searched":
        return LocalVim.from_config(named_architecture(SEARCHED))
    return longseq.from_pretrained("localvim_fmnist", directions=directions[variant])


def _curve(log_dir: Path) -> list[dict]:
    """Held-out accuracy by step from the newest run's CSV log (one point per step: the CSV repeats a step's row
    when several values land; older runs of the variant stay in their own version directories)."""
    points = {}
    for path in sorted(log_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)[-1:]:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("val/acc"):
                    points[int(row["step"])] = float(row["val/acc"])
    return [{"step": step, "val_acc": acc} for step, acc in sorted(points.items())]


def save_model(model, variant: str) -> Path:
    """The trained weights: our checkpoint format for LocalVim, a timm state dict (safetensors) for the ViT."""
    from safetensors.torch import save_file

    path = RESULTS / "models" / f"vision_fmnist_{variant}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if variant == "vit":
        path = path.with_suffix(".safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        model.save_pretrained(path)
    return path


def train(
    variant: Literal["local", "vim", "cross", "searched", "vit"],
    root: str,
    steps: int = 1700,
    batch_size: int = 64,
    val_every: int = 250,
    seed: int = 0,
) -> None:
    """Train one variant on Fashion-MNIST and write its result JSON.

    Args:
        variant: which model (see the module docstring).
        root: the Fashion-MNIST ImageFolder (train/ and val/, `vision make-image-folder`).
        steps: optimizer steps (1,700 x 64 images is about two epochs).
        batch_size: images per step.
        val_every: validate on 2,048 held-out images every this many steps (the learning curve).
        seed: initialisation and data order.
    """
    import torch

    from longseq.core.train import OptimizerConfig, TrainerConfig, build_trainer
    from longseq.vision.local_mamba.classify import Regularization, train_classifier

    torch.manual_seed(seed)
    model = _model(variant)
    log_dir = RESULTS / "logs" / f"vision_fmnist_{variant}"
    trainer = TrainerConfig(
        max_steps=steps, val_every_n_batches=val_every, limit_val_batches=8, log_dir=str(log_dir),
        run_name=variant, log_every_n_steps=50, seed=seed, accelerator="cpu", devices=1,
    )  # fmt: skip
    optimizer = OptimizerConfig(lr=1e-3, weight_decay=0.05, warmup_steps=100)
    data = _data(root, batch_size, seed, model)
    _, metrics = train_classifier(build_trainer(trainer), model, data, optimizer=optimizer, reg=Regularization())
    metrics["test_acc"] = metrics["val_acc"]  # the validation split is the official test set
    result = {
        "variant": variant,
        "label": LABELS[variant],
        "steps": steps,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        **metrics,
        "curve": _curve(log_dir),
    }
    if variant == "searched":
        result["directions"] = model.config.directions
    RESULTS.mkdir(exist_ok=True)
    save_model(model.eval(), variant)
    (RESULTS / f"vision_fmnist_{variant}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))


def _data(root: str, batch_size: int, seed: int, model):
    """The ImageFolder at ``root`` through timm, unaugmented (every variant sees the same images)."""
    from longseq.vision.images import ImageDataConfig
    from longseq.vision.local_mamba.classify import ImageFolderData

    config = ImageDataConfig(root=root, batch_size=batch_size, scale=(1.0, 1.0), hflip=0.0, color_jitter=0.0,
                             crop_pct=1.0)  # fmt: skip
    data = ImageFolderData(config, Path(root), seed=seed)
    data.prepare(model)
    return data


def search(root: str, steps: int = 400, batch_size: int = 64, seed: int = 0) -> None:
    """Train the `localvim_fmnist_search` supernet (all eight directions, softmax weights, single-level as
    upstream) for a few hundred steps on Fashion-MNIST (its ImageFolder at ``root``) and keep each layer's top 4
    directions (`vision extract-directions`)."""
    import torch

    import longseq
    from longseq.core.train import OptimizerConfig, TrainerConfig, build_trainer
    from longseq.vision.cli import main
    from longseq.vision.local_mamba.classify import Regularization, train_classifier

    torch.manual_seed(seed)
    supernet = longseq.from_pretrained("localvim_fmnist_search")
    trainer = TrainerConfig(
        max_steps=steps, val_every_n_batches=steps, limit_val_batches=8, log_dir=str(RESULTS / "logs"),
        run_name="vision_fmnist_supernet", log_every_n_steps=50, seed=seed, accelerator="cpu", devices=1,
    )  # fmt: skip
    optimizer = OptimizerConfig(lr=1e-3, weight_decay=0.05, warmup_steps=50)
    data = _data(root, batch_size, seed, supernet)
    _, metrics = train_classifier(build_trainer(trainer), supernet, data, optimizer=optimizer, reg=Regularization())
    supernet_dir = RESULTS / "logs" / "vision_fmnist_supernet_model"
    supernet.save_pretrained(supernet_dir)
    probs = [layer.mixer.multi_scan.probabilities().tolist() for layer in supernet.layers]
    code = main(["extract-directions", "--checkpoint", str(supernet_dir), "--output", str(SEARCHED),
                 "--model", "localvim_fmnist"])  # fmt: skip
    if code:
        raise SystemExit(code)
    summary = {"steps": steps, "supernet_test_acc": metrics["val_acc"], "probabilities": probs}
    (RESULTS / "vision_fmnist_search.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def report() -> None:
    """Print the Markdown table of the finished variants and draw the learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(p.read_text()) for v in VARIANTS if (p := RESULTS / f"vision_fmnist_{v}.json").is_file()]
    print("| model | parameters | test accuracy | held-out accuracy | training time (s) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['label']} | {r['params'] / 1e3:.0f}k | {100 * r['test_acc']:.2f} % | "
            f"{100 * r['val_acc']:.2f} % | {r['train_seconds']:.0f} |"
        )
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot([p["step"] for p in r["curve"]], [100 * p["val_acc"] for p in r["curve"]], marker="o", label=r["label"])
    ax.set_xlabel(f"optimizer step (batch {results[0]['batch_size']})")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Fashion-MNIST, CPU, same data and schedule")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    (ROOT / "plots").mkdir(exist_ok=True)
    fig.savefig(ROOT / "plots" / "vision_fmnist.png", dpi=120)
    print(f"plot: {ROOT / 'plots' / 'vision_fmnist.png'}")


if __name__ == "__main__":
    from jsonargparse import CLI

    CLI([train, search, report], as_positional=False)
