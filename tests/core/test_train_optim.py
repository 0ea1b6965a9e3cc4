"""Optimizer groups (which parameters decay) and the cosine schedule with warm-up."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from longseq.core.train import OptimizerConfig, configure_optimizers, cosine_with_warmup, param_groups
from tests.core.train_helpers import TinyLM


def names_in(model: nn.Module, params: list) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_marked_parameters_biases_and_norm_weights_get_no_weight_decay():
    model = TinyLM()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert names_in(model, decay["params"]) == {"embedding.weight", "conv.weight", "proj.weight", "head.weight"}
    assert names_in(model, no_decay["params"]) == {"A_log", "conv.bias", "proj.bias", "norm.weight"}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_frozen_parameters_are_left_out_and_tied_ones_appear_once():
    model = TinyLM()
    model.head.weight = model.embedding.weight
    model.proj.weight.requires_grad_(False)
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert names_in(model, decay["params"]) == {"embedding.weight", "conv.weight"}
    assert len(decay["params"]) == 2


def test_weight_decay_shrinks_only_the_decaying_parameters():
    model = TinyLM()
    config = OptimizerConfig(lr=0.5, weight_decay=0.2, warmup_steps=0)
    optimizer = configure_optimizers(model, config, total_steps=10)["optimizer"]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a zero gradient: only the decay moves a parameter
    optimizer.step()
    for name, p in model.named_parameters():
        if name in {"A_log", "conv.bias", "proj.bias", "norm.weight"}:
            torch.testing.assert_close(p, before[name], rtol=0, atol=0, msg=name)
        else:
            torch.testing.assert_close(p, before[name] * (1 - 0.5 * 0.2), msg=name)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.25), (1, 0.5), (3, 1.0), (4, 1.0), (8, 0.1 + 0.9 * 0.5), (12, 0.1), (50, 0.1)],
)
def test_cosine_with_warmup_values(step, expected):
    # warm-up over steps 0..3, cosine from step 4 to the last step 12, then the floor
    value = cosine_with_warmup(step, warmup_steps=4, total_steps=13, min_lr_ratio=0.1)
    assert value == pytest.approx(expected)


def test_cosine_without_warmup_starts_at_the_peak_and_follows_the_cosine():
    values = [cosine_with_warmup(s, warmup_steps=0, total_steps=5, min_lr_ratio=0.0) for s in range(5)]
    assert values == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(5)])


def test_the_scheduler_sets_the_learning_rate_of_each_step():
    model = TinyLM()
    config = OptimizerConfig(lr=2e-3, warmup_steps=2, min_lr_ratio=0.5)
    configured = configure_optimizers(model, config, total_steps=6)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        assert optimizer.param_groups[1]["lr"] == seen[-1]
        optimizer.step()
        scheduler.step()
    expected = [2e-3 * cosine_with_warmup(s, warmup_steps=2, total_steps=6, min_lr_ratio=0.5) for s in range(6)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(1e-3) and seen[1] == pytest.approx(2e-3) and seen[-1] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be positive"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_bad_optimizer_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**kwargs)


def test_the_schedule_needs_a_finite_length():
    with pytest.raises(ValueError, match="set max_steps"):
        configure_optimizers(TinyLM(), OptimizerConfig(), total_steps=float("inf"))
