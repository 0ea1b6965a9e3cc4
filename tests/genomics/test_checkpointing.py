"""``--trainer.gradient_checkpointing``: HyenaDNA and Caduceus recompute their blocks in the backward pass and
get the same gradients (dropout included: the recomputation replays the random state)."""

from __future__ import annotations

import pytest
import torch

import longseq
from longseq.genomics.cli import main
from longseq.genomics.models import caduceus as caduceus_module
from longseq.genomics.models import hyenadna as hyenadna_module


def gradients(model, ids, lengths, *, checkpointing: bool) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model.gradient_checkpointing = checkpointing
    torch.manual_seed(7)  # the same dropout masks in both runs
    h = model.embed(ids, lengths)
    (h.square().mean() + model(ids).float().logsumexp(-1).mean()).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["hyenadna-test", "caduceus-ps-test", "caduceus-ph-test"])
def test_checkpointed_blocks_give_the_same_gradients(name, monkeypatch):
    model = longseq.from_pretrained(name, **({"embed_dropout": 0.1} if name.startswith("hyena") else {})).train()
    ids, lengths = torch.randint(7, 11, (2, 40)), torch.tensor([40, 25])
    plain = gradients(model, ids, lengths, checkpointing=False)
    calls = []
    module = hyenadna_module if name.startswith("hyena") else caduceus_module
    real = module.checkpoint
    monkeypatch.setattr(module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = gradients(model, ids, lengths, checkpointing=True)
    assert len(calls) == 2 * model.config.n_layer  # every block, in both forward passes
    assert plain.keys() == again.keys() and len(plain) > 0
    for key in plain:
        torch.testing.assert_close(again[key], plain[key], rtol=1e-5, atol=1e-7, msg=key)
    with torch.no_grad():  # inference never checkpoints
        model(ids)
    assert len(calls) == 2 * model.config.n_layer


def test_the_trainer_flag_reaches_the_model(tmp_path, capsys, monkeypatch):
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{'ACGT' * 6},{'ab'[i % 2]}\n" for i in range(4)))
    calls = []
    real = hyenadna_module.checkpoint
    monkeypatch.setattr(hyenadna_module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = ["finetune", "--data.train", table, "--model", "hyenadna-test", "--output", tmp_path / "c"]
    args += ["--trainer.max_steps", 1, "--data.batch_size", 4, "--trainer.gradient_checkpointing", "true"]
    assert main([str(a) for a in [*args, "--trainer.log_dir", tmp_path / "runs"]]) == 0
    assert len(calls) == 2  # one training step through both blocks
