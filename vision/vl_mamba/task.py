"""VL-Mamba training in the paper's two stages (Lightning, on `core.train`) and batched question answering.

Stage "align": the connector learns to feed the frozen LM (vision tower and LM frozen). Stage "instruct": the
connector and the LM train together (the vision tower stays frozen). Both resume exactly through `core.train.fit`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from longseq.core.train import (
    OptimizerConfig,
    ResumableDataLoader,
    TrainerConfig,
    build_trainer,
    configure_optimizers,
    fit,
)
from longseq.vision.vl_mamba.data import VQADataset, VQARecord, collate, encode_prompt, load_image, read_jsonl
from longseq.vision.vl_mamba.model import VLMamba


@dataclass(kw_only=True)
class VQADataConfig:
    """Where the LLaVA-style JSONL records are, and how to batch them."""

    train: str
    """The training JSONL (image paths relative to it)."""
    val: str | None = None
    """A validation JSONL; None: hold out ``val_size`` training records."""
    val_size: int = 256
    batch_size: int = 16

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


class VQAData(L.LightningDataModule):
    def __init__(self, config: VQADataConfig, tokenizer, image_config: dict, *, seed: int = 0):
        super().__init__()
        self.config, self.seed = config, seed
        self.collate = functools.partial(collate, pad_id=tokenizer.pad_id)
        records = read_jsonl(config.train)
        if config.val is not None:
            self.train_set = VQADataset(records, tokenizer, image_config=image_config)
            self.val_set = VQADataset(read_jsonl(config.val), tokenizer, image_config=image_config)
        else:
            order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
            held = min(config.val_size, len(records) // 5)
            full = VQADataset(records, tokenizer, image_config=image_config)
            self.train_set, self.val_set = Subset(full, order[held:]), Subset(full, order[:held])

    def train_dataloader(self) -> DataLoader:
        return ResumableDataLoader(
            self.train_set,
            batch_size=min(self.config.batch_size, len(self.train_set)),
            seed=self.seed,
            collate_fn=self.collate,
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.config.batch_size, collate_fn=self.collate)


class VLMambaTask(L.LightningModule):
    """Next-token cross-entropy on the answers, with the stage's parameters trainable."""

    def __init__(self, model: VLMamba, *, stage: Literal["align", "instruct"], optimizer: OptimizerConfig):
        super().__init__()
        self.model = model
        self.stage = stage
        self.optimizer_config = optimizer
        model.set_stage(stage)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, ids, labels = batch
        _, loss = self.model(images, ids, labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, ids, labels = batch
        self.log("val/loss", self.model(images, ids, labels)[1], prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)


def train_vl_mamba(
    model: VLMamba,
    tokenizer,
    data: VQADataConfig,
    *,
    stage: Literal["align", "instruct"],
    trainer: TrainerConfig,
    optimizer: OptimizerConfig,
    resume: str | None = None,
) -> dict[str, float]:
    """One training stage; returns the final validation loss."""
    datamodule = VQAData(data, tokenizer, model.image_config(), seed=trainer.seed)
    task = VLMambaTask(model, stage=stage, optimizer=optimizer)
    lightning = build_trainer(trainer)
    fit(lightning, task, datamodule, resume=resume)
    val = lightning.validate(task, datamodule=datamodule, verbose=False)[0]
    return {"val_loss": float(val["val/loss"])}


@torch.inference_mode()
def answer_records(model: VLMamba, tokenizer, records: list[VQARecord], *, batch_size: int = 32) -> list[str]:
    """Greedy answers to each record's first question, batched by prompt length (no padding inside a prompt)."""
    model.eval()
    config = model.image_config()
    prompts = [encode_prompt(tokenizer, r.question) for r in records]
    groups = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[len(prompt)].append(i)
    answers = [""] * len(records)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            images = torch.stack([load_image(records[i].image, **config) for i in chunk])
            ids = torch.tensor([prompts[i] for i in chunk])
            tokens = model.generate(images, ids, max_new_tokens=8, eos_token_id=tokenizer.eos_id)
            for i, row in zip(chunk, tokens.tolist()):
                answers[i] = tokenizer.decode(row)
    return answers
