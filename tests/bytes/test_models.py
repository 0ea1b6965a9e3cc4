"""MEGABYTE and MBLM: next-byte logits, no leak from the future, cached generation == recomputation, checkpoints."""

import json

import pytest
import torch

from longseq import from_pretrained
from longseq.bytes import MBLM, ByteLM, MBLMConfig, Megabyte, MegabyteConfig, StageConfig
from longseq.bytes.models import mblm, megabyte
from longseq.core.checkpoint import CheckpointError

TINY = ["mblm-tiny", "mblm-tiny-3stage", "megabyte-tiny"]


@pytest.mark.parametrize("name", TINY)
def test_next_byte_logits_and_bits(name):
    model = from_pretrained(name)
    ids = torch.randint(0, 256, (2, model.context - 1))
    logits = model(ids)
    assert logits.shape == (2, model.context - 1, 256)
    # logits[:, t] predicts byte t + 1: the same as the scoring logits one position later
    scoring = model.byte_logits(torch.cat((ids, torch.zeros(2, 1, dtype=torch.long)), dim=1))
    torch.testing.assert_close(logits, scoring[:, 1:])
    bits = model.bits(ids)
    assert bits.shape == (2,) and bool((bits > 0).all())
    expected = torch.nn.functional.cross_entropy(scoring[:, :-1].flatten(0, 1), ids.flatten(), reduction="sum")
    torch.testing.assert_close(bits.sum(), expected / torch.log(torch.tensor(2.0)))


@pytest.mark.parametrize("name", TINY)
def test_no_future_leak(name):
    model = from_pretrained(name).double()
    ids = torch.randint(0, 256, (1, model.context - 1))
    logits = model(ids)
    t = int(torch.randint(0, model.context - 2, ()))
    changed = ids.clone()
    changed[0, t] = (changed[0, t] + 1) % 256
    other = model(changed)
    torch.testing.assert_close(other[:, :t], logits[:, :t], rtol=0, atol=1e-12)
    assert (other[:, t:] - logits[:, t:]).abs().max() > 1e-6


@pytest.mark.parametrize("name", TINY)
def test_cached_greedy_generation_equals_full_recompute(name):
    model = from_pretrained(name)
    prompt = torch.randint(0, 256, (2, 7))
    new = 3 * model.decoder.unit_sizes[0]  # crosses global units (the core tests run whole contexts)
    assert torch.equal(model.generate(prompt, new), model.generate(prompt, new, use_cache=False))


def test_bits_per_byte_covers_every_byte():
    model = from_pretrained("mblm-tiny")
    data = torch.randint(0, 256, (model.context * 2 + 5,), dtype=torch.uint8)
    bpb = model.bits_per_byte(data, batch_size=1)
    windows = [data[: model.context], data[model.context : 2 * model.context], data[2 * model.context :]]
    with torch.no_grad():
        expected = sum(float(model.bits(w.long()[None])) for w in windows) / data.numel()
    assert bpb == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        model.bits_per_byte(torch.zeros(0, dtype=torch.uint8))


def test_bits_per_byte_with_a_sliding_history():
    """stride 1: every byte past the first window is predicted from the context - 1 bytes before it."""
    model = from_pretrained("mblm-tiny")
    context = model.context
    data = torch.randint(0, 256, (context + 3,), dtype=torch.uint8)
    with torch.no_grad():
        first = model.position_bits(data[None, :context].long())[0]
        later = [
            model.position_bits(data[None, t - context + 1 : t + 1].long())[0, -1] for t in range(context, len(data))
        ]
    expected = (float(first.sum()) + sum(float(b) for b in later)) / len(data)
    assert model.bits_per_byte(data, stride=1, batch_size=2) == pytest.approx(expected, rel=1e-5)
    # stride context - 2: the second (short) window starts 2 bytes before the first one's end, scores its last 3.
    with torch.no_grad():
        tail = model.position_bits(data[None, context - 2 :].long())[0, 2:]
    expected = (float(first.sum()) + float(tail.sum())) / len(data)
    assert model.bits_per_byte(data, stride=context - 2) == pytest.approx(expected, rel=1e-5)
    # A window shorter than the context: windows of 4 bytes every 2, each scoring its last 2 after the first.
    with torch.no_grad():
        rows = [data[None, s : s + 4].long() for s in range(0, len(data) - 2, 2)]
        parts = [model.position_bits(rows[0])[0]] + [model.position_bits(row)[0, 2:] for row in rows[1:]]
    expected = sum(float(part.sum()) for part in parts) / len(data)
    assert model.bits_per_byte(data, window=4, stride=2, batch_size=3) == pytest.approx(expected, rel=1e-5)
    for stride in (0, context + 1):
        with pytest.raises(ValueError, match="stride"):
            model.bits_per_byte(data, stride=stride)
    with pytest.raises(ValueError, match="window"):
        model.bits_per_byte(data, window=context + 1)


@pytest.mark.parametrize("name", TINY)
def test_save_and_load_round_trip(name, tmp_path):
    model = from_pretrained(name)
    model.save_pretrained(tmp_path / "m")
    loaded = type(model).from_pretrained(tmp_path / "m")  # the mixin: longseq.from_pretrained, this class only
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    ids = torch.randint(0, 256, (1, 20))
    torch.testing.assert_close(loaded(ids), model(ids))


def test_checkpoint_of_another_family_or_shape_is_refused(tmp_path):
    from longseq.core.lm import CausalLM

    CausalLM.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    with pytest.raises(CheckpointError, match="holds a CausalLM, not a ByteLM"):
        ByteLM.from_pretrained(tmp_path / "lm")
    from_pretrained("mblm-tiny").save_pretrained(tmp_path / "a")
    with pytest.raises(CheckpointError, match="holds a MBLM, not a Megabyte"):
        Megabyte.from_pretrained(tmp_path / "a")
    # an MBLM config with weights of another shape
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config["stages"][0]["d_model"] = 48
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not fit MBLM"):
        from_pretrained(tmp_path / "a")
    for name in (tmp_path / "missing", "mblm-huge"):
        with pytest.raises(CheckpointError, match="unknown model"):
            MBLM.from_pretrained(name)


def test_configs_validate():
    with pytest.raises(ValueError, match="at least one stage"):
        MBLMConfig(stages=[])
    with pytest.raises(ValueError, match="train_checkpoint_chunks"):
        MBLMConfig(stages=[StageConfig(d_model=8, n_layers=1, seq_len=4)] * 2, train_checkpoint_chunks=[1, 1])
    with pytest.raises(ValueError, match="num_heads"):
        StageConfig(d_model=10, n_layers=1, seq_len=4, num_heads=4)
    with pytest.raises(ValueError, match="heads"):
        MegabyteConfig(patch_size=3, d_global_byte=5, num_heads_global=4)
    with pytest.raises(ValueError, match="256"):
        MegabyteConfig(vocab_size=100)


def test_bad_ids_are_refused():
    model = from_pretrained("mblm-tiny")
    with pytest.raises(ValueError, match="exceed"):
        model(torch.zeros(1, model.context + 1, dtype=torch.long))  # MBLM takes the whole context
    with pytest.raises(ValueError, match="exceed"):
        from_pretrained("megabyte-tiny")(torch.zeros(1, model.context, dtype=torch.long))  # MEGABYTE one less
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model(torch.full((1, 4), 256))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="exceed the context"):
        model.generate(torch.zeros(1, 4, dtype=torch.long), model.context - 3)
    with pytest.raises(ValueError, match="max_new_bytes must be >= 0"):
        model.generate(torch.zeros(1, 4, dtype=torch.long), -1)


def test_presets_build_and_context():
    for family in (mblm.FAMILY, megabyte.FAMILY):
        for name, config in family.presets.items():
            if config.context <= 2**16:
                assert from_pretrained(name).context == config.context, name
    assert mblm.FAMILY.presets["mblm-1m"].context == 1_048_576


def test_training_reduces_the_loss():
    """A few AdamW steps on one repeated window: the tiny MBLM learns."""
    model = from_pretrained("mblm-tiny").train()
    ids = torch.randint(0, 256, (2, model.context - 1))
    targets = torch.roll(ids, -1, dims=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
