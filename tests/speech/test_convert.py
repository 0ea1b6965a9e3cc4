"""Parity with the official VALL-E X code (tests/fixtures/valle_a: a tiny checkpoint in the released layout),
loaded as a user would: ``longseq.from_pretrained(path, n_heads=4)``."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import longseq
from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.models.valle2 import Valle2
from longseq.speech.models.vallex import keys, stack_stage_embeddings

FIXTURE = Path(__file__).parents[1] / "fixtures" / "valle_a"


@pytest.fixture(scope="module")
def model():
    return longseq.from_pretrained(FIXTURE / "checkpoint.pt", n_heads=4)


def test_the_fixture_loads_in_eval_mode(model):
    assert type(model) is Valle2 and not model.training
    assert not any(module.training for module in model.modules())


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


def inputs(expected):
    codes = torch.cat([expected["prompt_codes"], expected["target_codes"]], dim=-1)
    return expected["text_tokens"], expected["language_ids"], codes


def test_config_inferred(model):
    c = model.config
    assert (c.d_model, c.ar_layers, c.nar_layers, c.n_codebooks, c.codebook_size) == (64, 2, 2, 8, 1024)
    assert (c.text_vocab_size, c.n_languages, c.group_size, c.nar_tie_heads) == (2048, 3, 1, True)
    assert model.nar.heads[0].weight is model.nar.audio_embeddings[2].weight


def test_ar_teacher_forced(model, expected):
    text, languages, codes = inputs(expected)
    with torch.no_grad():
        logits, targets = model.ar(text, torch.tensor([20]), codes[:, 0], torch.tensor([55]), languages=languages)
    torch.testing.assert_close(logits[:, :, 0], expected["ar_logits_full"], atol=1e-5, rtol=0)
    assert targets[0, -1, 0] == 1024  # EOS after the last frame


def test_ar_kv_cached_steps(model, expected):
    text, languages, codes = inputs(expected)
    target = expected["target_codes"][:, 0]
    rows = []
    with torch.no_grad():
        logits, state = model.ar.prefill(text, expected["prompt_codes"][:, 0], languages=languages, max_groups=26)
        rows.append(logits[:, 0])
        for t in range(25):
            rows.append(model.ar.step(target[:, t : t + 1], state, position=31 + t)[:, 0])
    torch.testing.assert_close(torch.stack(rows, dim=1), expected["ar_logits"], atol=1e-5, rtol=0)


def test_nar_teacher_forced(model, expected):
    text, languages, codes = inputs(expected)
    lens = {"text_lens": torch.tensor([20]), "code_lens": torch.tensor([55]), "prompt_lens": torch.tensor([30])}
    with torch.no_grad():
        for stage in range(1, 8):
            logits = model.nar(text, codes=codes, stage=stage, languages=languages, **lens)
            torch.testing.assert_close(logits[:, 30:], expected["nar_logits"][:, stage - 1], atol=5e-5, rtol=0)


def test_greedy_generation(model, expected):
    text, languages, _ = inputs(expected)
    greedy = SamplingConfig(top_p=0.0, ras=False)
    codes = model.generate(text, expected["prompt_codes"], max_frames=15, sampling=greedy, languages=languages)
    torch.testing.assert_close(codes, expected["greedy_codes"], rtol=0, atol=0)


def test_every_key_mapped_and_unknown_keys_refused(model, tmp_path):
    state = stack_stage_embeddings(load_pickle(FIXTURE / "checkpoint.pt")["model"])
    converted = keys(model.config).rename(state, "valle_a")
    assert converted["nar.stage_embedding.weight"].shape == (7, 64)
    assert set(converted) == set(model.state_dict())
    path = tmp_path / "extra.pt"
    state = load_pickle(FIXTURE / "checkpoint.pt")["model"]
    torch.save({"model": {**state, "ar_decoder.extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="keys no rule maps: ar_decoder.extra.weight"):
        longseq.from_pretrained(path, n_heads=4)


def test_overrides_and_other_files(tmp_path):
    with pytest.raises(CheckpointError, match="n_heads must be a positive divisor of d_model 64"):
        longseq.from_pretrained(FIXTURE / "checkpoint.pt", n_heads=5)
    with pytest.raises(CheckpointError, match=r"\(vallex\) takes no setting d_model \(accepted: n_heads, group_size"):
        longseq.from_pretrained(FIXTURE / "checkpoint.pt", d_model=8)
    grouped = longseq.from_pretrained(FIXTURE / "checkpoint.pt", n_heads=4, group_size=2)
    assert grouped.config.group_size == 2 and grouped.ar.group_in is not None and not grouped.training
    path = tmp_path / "other.pt"
    torch.save({"model": {"ar_decoder.layers.0.linear1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="not a VALL-E checkpoint: it lacks ar_text_embedding"):
        longseq.from_pretrained(path)
    torch.save({"model": {"encoder.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="no longseq family reads"):
        longseq.from_pretrained(path)


def test_lifeiteng_files_without_language_tables_get_a_zero_one(tmp_path):
    state = load_pickle(FIXTURE / "checkpoint.pt")["model"]
    path = tmp_path / "lifeiteng.pt"
    torch.save({"model": {k: v for k, v in state.items() if "language_embedding" not in k}}, path)
    model = longseq.from_pretrained(path, n_heads=4)
    assert model.config.n_languages == 1 and not model.ar.text.language_embedding.weight.any()
