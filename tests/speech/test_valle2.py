import pytest
import torch

from longseq.core.checkpoint import CheckpointError
from longseq.core.registry import from_pretrained
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.models.valle2 import IGNORE, Valle2, Valle2Config
from longseq.speech.text.tokenizer import PHONEMES


def tiny(**overrides) -> Valle2:
    return from_pretrained("valle2-tiny", **overrides).eval()


def batch(group_size: int = 1, b: int = 2):
    text = torch.randint(1, 40, (b, 9))
    text_lens = torch.tensor([9, 6])[:b]
    codes = torch.randint(0, 16, (b, 4, 8 * group_size))
    code_lens = torch.tensor([8 * group_size, 4 * group_size])[:b]
    return text, text_lens, codes, code_lens


@pytest.mark.parametrize("group_size", [1, 2, 4])
def test_ar_targets_and_shapes(group_size):
    model = tiny(group_size=group_size)
    text, text_lens, codes, code_lens = batch(group_size)
    logits, targets = model.ar(text, text_lens, codes[:, 0], code_lens)
    assert logits.shape == (2, 9, group_size, 17) and targets.shape == (2, 9, group_size)
    flat = targets.reshape(2, -1)
    assert torch.equal(flat[0, : 8 * group_size], codes[0, 0]) and (flat[0, 8 * group_size :] == 16).all()
    short = 4 * group_size
    assert torch.equal(flat[1, :short], codes[1, 0, :short])
    assert (flat[1, short : short + group_size] == 16).all() and (flat[1, short + group_size :] == IGNORE).all()


def test_group_size_one_is_plain_valle():
    plain, grouped = tiny(group_size=1), tiny(group_size=4)
    assert plain.ar.group_in is None and plain.ar.group_out is None
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    group_layers = count(grouped.ar.group_in) + count(grouped.ar.group_out)
    assert count(grouped) - group_layers == count(plain)


@pytest.mark.parametrize("group_size", [1, 2])
def test_ar_is_causal_over_audio_and_cache_matches(group_size):
    model = tiny(group_size=group_size)
    text, _, codes, _ = batch(group_size, b=1)
    t = codes.shape[-1]
    with torch.no_grad():
        full, _ = model.ar(text, torch.tensor([9]), codes[:, 0], torch.tensor([t]))
        changed = codes[:, 0].clone()
        changed[:, t // 2 :] = (changed[:, t // 2 :] + 1) % 16
        perturbed, _ = model.ar(text, torch.tensor([9]), changed, torch.tensor([t]))
        groups_before = t // 2 // group_size
        torch.testing.assert_close(full[:, : groups_before + 1], perturbed[:, : groups_before + 1])
        assert not torch.allclose(full[:, groups_before + 1 :], perturbed[:, groups_before + 1 :])
        # KV-cached decoding gives the same logits as the parallel pass.
        prompt = codes[:, 0, : 2 * group_size]
        logits, state = model.ar.prefill(text, prompt, max_groups=8)
        rows = [logits]
        for i in range(2, t // group_size):
            group = codes[:, 0, i * group_size : (i + 1) * group_size]
            rows.append(model.ar.step(group, state, position=i + 1))
        torch.testing.assert_close(torch.stack(rows, 1), full[:, 2:], atol=1e-5, rtol=1e-4)


def force_eos(model: Valle2, value: float) -> None:
    """Give EOS (id 16) the logit ``value`` at every AR step."""
    logits = model.ar.logits
    model.ar.logits = lambda h: logits(h).index_fill(-1, torch.tensor([16]), value)


@pytest.mark.parametrize("group_size", [1, 4])
def test_generation_length_bound_and_steps(group_size):
    model = tiny(group_size=group_size)
    force_eos(model, float("-inf"))  # never ends by itself: the length bound stops it
    calls = []
    model.ar.decoder.register_forward_hook(lambda *a: calls.append(1))
    text, _, codes, _ = batch(group_size, b=1)
    out = model.generate(text, codes[:, :, :5], max_frames=16, sampling=SamplingConfig(top_p=0.5))
    assert out.shape == (1, 4, 16) and out.max() < 16
    assert len(calls) == 16 // group_size  # the prefill, then one step per group but the last


def test_generation_stops_at_eos():
    model = tiny(group_size=2)
    force_eos(model, 1e9)
    out = model.generate(torch.randint(1, 40, (1, 5)), None, max_frames=50, sampling=SamplingConfig(top_p=0.0))
    assert out.shape == (1, 4, 0)


def test_synthesis_does_not_stop_before_its_lower_bound():
    from longseq.speech.codecs.mel import PRESETS, MelCodec
    from longseq.speech.synthesis import SECONDS_PER_TOKEN_MIN, synthesize

    model = tiny(group_size=2)
    force_eos(model, 1e9)  # the model would end the speech at once
    codec = MelCodec(PRESETS["mel-tiny"]).eval()
    text = "hello there, alice"
    result = synthesize(model, codec, text, seed=0)
    lower = int(SECONDS_PER_TOKEN_MIN * len(text) * codec.frame_rate)
    assert lower >= 2 and lower <= result.codes.shape[-1] < lower + 2  # whole groups of 2 frames


def test_split_sentences():
    from longseq.speech.synthesis import split_sentences

    text = "Alice  was beginning to get very tired. Oh dear!\nWhat a long, long, long sentence this one is; really."
    assert split_sentences(text, max_chars=40) == [
        "Alice was beginning to get very tired.",
        "Oh dear!",
        "What a long, long,",  # cut at clauses, rejoined up to max_chars
        "long sentence this one is; really.",
    ]
    pieces = split_sentences(text, max_chars=12)
    assert max(len(p) for p in pieces) <= 12 and " ".join(pieces) == " ".join(text.split())
    assert split_sentences("Supercalifragilistic word.", max_chars=8) == ["Supercalifragilistic", "word."]
    # Punctuation alone stays with the words before it (or after it, at the start).
    assert split_sentences("... Hello. ... World. - !") == ["... Hello. ...", "World. - !"]
    assert split_sentences("...") == ["..."]


def test_long_text_is_spoken_sentence_by_sentence_in_one_voice():
    from longseq.speech.codecs.mel import PRESETS, MelCodec
    from longseq.speech.synthesis import SENTENCE_PAUSE_SECONDS, synthesize

    model = tiny(group_size=2)
    force_eos(model, 1e9)  # every sentence stops at its lower bound
    codec = MelCodec(PRESETS["mel-tiny"]).eval()
    calls = []
    generate = model.generate
    model.generate = lambda ids, prompt, **kw: calls.append((ids, prompt)) or generate(ids, prompt, **kw)
    result = synthesize(model, codec, "hello there, alice. how are you today?", seed=0)
    (first_ids, first_prompt), (second_ids, second_prompt) = calls
    assert first_prompt is None and second_prompt.shape[-1] > 0  # the first sentence prompts the second
    tokenizer = model.config.text_tokenizer()
    assert second_ids[0].tolist() == tokenizer.encode("hello there, alice. how are you today?")
    frames = result.codes.shape[-1]
    assert torch.equal(result.codes[:, : second_prompt.shape[-1]], second_prompt[0])
    samples_per_frame = codec.sample_rate / codec.frame_rate
    pause = round(SENTENCE_PAUSE_SECONDS * codec.sample_rate)
    assert result.wav.shape[-1] == pytest.approx(frames * samples_per_frame + pause, abs=2 * samples_per_frame)


def test_nar_sees_prompt_codebooks_not_target_future_codebooks():
    model = tiny()
    text, text_lens, codes, code_lens = batch(b=1)
    prompt_lens = torch.tensor([3])
    with torch.no_grad():
        base = model.nar(text, text_lens, codes, code_lens, prompt_lens, stage=2)
        hidden = codes.clone()
        hidden[:, 2:, 3:] = (hidden[:, 2:, 3:] + 1) % 16  # target frames' codebooks >= stage
        torch.testing.assert_close(model.nar(text, text_lens, hidden, code_lens, prompt_lens, stage=2), base)
        seen = codes.clone()
        seen[:, 3, :3] = (seen[:, 3, :3] + 1) % 16  # the prompt's last codebook
        assert not torch.allclose(model.nar(text, text_lens, seen, code_lens, prompt_lens, stage=2), base)


@pytest.mark.parametrize("options", [{}, {"nar_stage": "token", "ar_tie_head": True, "nar_tie_heads": False}])
def test_every_parameter_gets_a_gradient(options):
    model = tiny(group_size=2, **options).train()
    text, text_lens, codes, code_lens = batch(2)
    logits, targets = model.ar(text, text_lens, codes[:, 0], code_lens)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE)
    for stage in range(1, 4):
        loss = (
            loss + model.nar(text, text_lens, codes, code_lens, torch.tensor([3, 2]), stage=stage).logsumexp(-1).mean()
        )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_save_load_round_trip_and_regroup(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    loaded = Valle2.from_pretrained(tmp_path / "m")
    text, text_lens, codes, code_lens = batch()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.ar(text, text_lens, codes[:, 0], code_lens)[0], model.ar(text, text_lens, codes[:, 0], code_lens)[0]
        )
    assert loaded.nar.heads[0].weight is loaded.nar.audio_embeddings[2].weight
    regrouped = from_pretrained(tmp_path / "m", group_size=2)
    assert regrouped.config.group_size == 2 and regrouped.ar.group_in is not None
    torch.testing.assert_close(regrouped.nar.audio_embeddings[1].weight, model.nar.audio_embeddings[1].weight)
    with pytest.raises(CheckpointError, match="only group_size, tokenizer and symbols can change"):
        from_pretrained(tmp_path / "m", d_model=64)


def test_new_tokenizer_from_a_checkpoint_keeps_shared_symbols(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    phonemes = from_pretrained(tmp_path / "m", tokenizer="phonemes")
    assert phonemes.config.text_tokenizer().symbols == PHONEMES and not phonemes.training
    assert phonemes.ar.text.embedding.weight.shape[0] == len(PHONEMES) + 1
    old_ids, new_ids = model.config.text_tokenizer().symbol_ids(), phonemes.config.text_tokenizer().symbol_ids()
    for table, old in (
        (phonemes.ar.text.embedding, model.ar.text.embedding),
        (phonemes.nar.text.embedding, model.nar.text.embedding),
    ):
        for symbol in " ,bdk":
            torch.testing.assert_close(table.weight[new_ids[symbol]], old.weight[old_ids[symbol]])
        assert not any(torch.equal(table.weight[new_ids["ð"]], row) for row in old.weight)
    # Everything else is the checkpoint's.
    torch.testing.assert_close(phonemes.ar.audio_embedding.weight, model.ar.audio_embedding.weight)
    torch.testing.assert_close(phonemes.nar.heads[0].weight, model.nar.heads[0].weight)
    assert from_pretrained("valle2-tiny", tokenizer="bytes").ar.text.embedding.weight.shape[0] == 257
    # A preset brings the tokenizer's alphabet too.
    assert from_pretrained("valle2-tiny", tokenizer="phonemes").config.text_tokenizer().symbols == PHONEMES
    with pytest.raises(CheckpointError, match="unknown tokenizer 'words'"):
        from_pretrained(tmp_path / "m", tokenizer="words")
    with pytest.raises(CheckpointError, match="preset mel-tiny: MelCodecConfig has no field group_size"):
        from_pretrained("mel-tiny", group_size=2)
    with pytest.raises(CheckpointError, match="group_size must be 1, 2, 4 or 8"):
        from_pretrained("valle2-tiny", group_size=3)


def test_config_validation():
    with pytest.raises(ValueError, match="group_size"):
        Valle2Config(group_size=3)
    with pytest.raises(ValueError, match="two codebooks"):
        Valle2Config(n_codebooks=1)
    with pytest.raises(ValueError, match="text_vocab_size"):
        Valle2Config(tokenizer="bytes", text_vocab_size=100)
    with pytest.raises(CheckpointError, match="unknown model"):
        from_pretrained("no-such-model")


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("valle2-tiny", {"n_heads": 0}, "n_heads must be >= 1"),
        ("valle2-tiny", {"dropout": 1.5}, "dropout must lie in"),
        ("valle2-tiny", {"ar_layers": -1}, "ar_layers must be >= 1"),
        ("valle2-tiny", {"prompt_seconds": float("nan")}, "prompt_seconds must be positive"),
        ("clam-tts-tiny", {"dropout": -0.1}, "dropout must lie in"),
        ("clam-tts-tiny", {"decoder_layers": 0}, "decoder_layers must be >= 1"),
        ("speechssm-tiny", {"n_heads": 0}, "n_heads must be >= 1"),
        ("speechssm-tiny", {"window_seconds": float("inf")}, "window_seconds must be a positive"),
        ("mel-tiny", {"hop_length": 0}, "hop_length must be >= 1"),
        ("mel-tiny", {"quantizer_dropout": 2.0}, "quantizer_dropout must lie in"),
        ("mel-vae-tiny", {"commitment": -1.0}, "commitment must be >= 0"),
    ],
)
def test_every_speech_config_refuses_bad_fields_in_one_line(name, overrides, message):
    with pytest.raises(CheckpointError, match=message) as err:
        from_pretrained(name, **overrides)
    assert "\n" not in str(err.value)


def test_a_checkpoint_of_another_family_is_refused(tmp_path):
    from longseq.speech.codecs.mel import MelCodec
    from longseq.speech.models.clam_tts import ClamTTS

    tiny().save_pretrained(tmp_path / "valle")
    with pytest.raises(CheckpointError, match="holds a Valle2, not a ClamTTS"):
        ClamTTS.from_pretrained(tmp_path / "valle")
    with pytest.raises(CheckpointError, match="holds a Valle2, not a MelCodec"):
        MelCodec.from_pretrained(tmp_path / "valle")
