"""VL-Mamba training in the paper's two stages (Lightning, on `core.train`) and batched question answering.

Stage "align": the connector learns to feed the frozen LM (vision tower and LM frozen). Stage "instruct": the
connector and the LM train together (the vision tower stays frozen). Both resume exactly through `core.train.fit`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from longseq.core.io import InputError
from longseq.core.train import OptimizerConfig, ResumableDataLoader, configure_optimizers, fit
from longseq.vision.vl_mamba.data import (
    VQADataset,
    VQARecord,
    collate,
    encode_conversation,
    encode_prompt,
    load_image,
    read_jsonl,
)
from longseq.vision.vl_mamba.data_config import VQADataConfig
from longseq.vision.vl_mamba.model import VLMamba


class VQAData(L.LightningDataModule):
    """The training and validation records of a `VQADataConfig`, every one checked up front: its image exists and
    its sequence (image tokens + text) fits the model's context.

    Raises:
        InputError: a bad record, a missing image, a record longer than the context, or no record to validate on.
    """

    def __init__(self, config: VQADataConfig, tokenizer, model: VLMamba, *, seed: int = 0):
        super().__init__()
        self.config, self.seed = config, seed
        self.collate = functools.partial(collate, pad_id=tokenizer.pad_id)
        records = read_jsonl(config.train)
        val_records = read_jsonl(config.val) if config.val is not None else []
        for record in records + val_records:
            _check_record(record, tokenizer, model)
        image_config = model.image_config()
        if config.val is not None:
            self.train_set = VQADataset(records, tokenizer, image_config=image_config)
            self.val_set = VQADataset(val_records, tokenizer, image_config=image_config)
        else:
            held = min(config.val_size, len(records) // 5)
            if held < 1:
                raise InputError(
                    f"{config.train}: {len(records)} records are too few to hold some out; give --data.val"
                )
            order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
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


def _check_record(record: VQARecord, tokenizer, model: VLMamba) -> None:
    if not record.image.is_file():
        raise InputError(f"record {record.id}: no such image {record.image}")
    length = len(encode_conversation(tokenizer, record.conversations)[0]) - 1 + model.num_image_tokens
    if length > model.config.context:
        raise InputError(f"record {record.id} takes {length} tokens; the model's context is {model.config.context}")


def train_vl_mamba(
    trainer: L.Trainer,
    model: VLMamba,
    tokenizer,
    data: VQADataConfig,
    *,
    stage: Literal["align", "instruct"],
    optimizer: OptimizerConfig,
    resume: str | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """One training stage with ``trainer`` (`core.train.build_trainer`: build it before the model, since it seeds
    everything); ``seed`` orders the data. Returns the final validation loss."""
    datamodule = VQAData(data, tokenizer, model, seed=seed)
    # Lightning keeps the mode a module arrives in, and loaded models come in eval mode
    task = VLMambaTask(model, stage=stage, optimizer=optimizer)
    fit(trainer, task, datamodule, resume=resume)
    val = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
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
