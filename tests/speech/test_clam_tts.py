import numpy as np
import pytest
import soundfile as sf
import torch

from longseq.core.checkpoint import CheckpointError
from longseq.core.registry import from_pretrained
from longseq.speech.cli import main
from longseq.speech.codecs.mel_vae import PRESETS, MelVAE
from longseq.speech.models.clam_tts import ClamTTS
from longseq.speech.models.sampling import SamplingConfig


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tts: error:")
    return err


# the latent language model


@pytest.fixture
def clam():
    codec = MelVAE(PRESETS["mel-vae-tiny"])
    codec.train()
    codec(torch.randn(2, 1, 24_000) * 0.1)
    model = from_pretrained("clam-tts-tiny")
    model.attach_codec(codec.eval())
    return model, codec


def batch(model, lengths=(7, 5)):
    c = model.config
    codes = torch.randint(c.codebook_size, (len(lengths), c.n_codebooks, max(lengths)))
    text = torch.randint(1, 257, (len(lengths), 6))
    return text, torch.tensor([6, 4]), codes, torch.tensor(lengths)


def test_losses_reach_every_parameter(clam):
    model, _ = clam
    losses = model.losses(*batch(model))
    assert set(losses) == {"loss", "vb", "eos", "eos_acc"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_mixture_nll_decreases_when_fitting_a_batch(clam):
    model, _ = clam
    data = batch(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        losses = model.losses(*data)
        first = float(losses["vb"].detach()) if first is None else first
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert float(model.losses(*data)["vb"].detach()) < 0.5 * first


def test_causal_in_frames(clam):
    model, _ = clam
    model.eval()
    text, text_lens, codes, code_lens = batch(model, (7, 7))
    changed = codes.clone()
    changed[:, :, 4:] = (changed[:, :, 4:] + 1) % model.config.codebook_size
    a, b = model(text, text_lens, codes, code_lens), model(text, text_lens, changed, code_lens)
    for x, y in zip(a, b):
        torch.testing.assert_close(x[:, :5], y[:, :5])  # position t sees frames < t only
        assert not torch.allclose(x[:, 5:], y[:, 5:])


def test_cached_generation_matches_the_teacher_forced_pass(clam, monkeypatch):
    model, _ = clam
    model.eval()
    text, _, codes, _ = batch(model, (6, 6))
    text, codes = text[:1], codes[:1]
    prompt, target = codes[..., :2], codes[..., 2:]
    seen = []

    def teacher(hidden, temperature, generator=None):
        seen.append(hidden)
        return target[:, :, len(seen) - 1], 0.0

    monkeypatch.setattr(model, "sample_frame", teacher)
    out = model.generate(text, prompt, max_frames=4, sampling=SamplingConfig())
    torch.testing.assert_close(out, target)
    log_pi, means, eos = model(text, torch.tensor([text.shape[1]]), codes, torch.tensor([6]))
    cached = model.head(torch.cat(seen))
    torch.testing.assert_close(cached[0], log_pi[0, 2:6], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cached[1], means[0, 2:6], atol=1e-5, rtol=1e-4)


def test_one_step_emits_all_codes_by_quantizing_a_sampled_latent(clam):
    model, _ = clam
    model.eval()
    hidden = torch.randn(1, model.config.d_model)
    generator = torch.Generator().manual_seed(3)
    codes, p_end = model.sample_frame(hidden, 1.0, generator)
    assert codes.shape == (1, model.config.n_codebooks) and 0.0 <= p_end <= 1.0
    # k ~ pi, z ~ N(mu_k, sigma^2 I), codes = greedy residual quantization of z.
    log_pi, means, _ = model.head(hidden)
    generator = torch.Generator().manual_seed(3)
    k = torch.multinomial(log_pi.exp(), 1, generator=generator)[0, 0]
    z = means[0, k] + torch.randn(means.shape[-1], generator=generator) * model.quantizer.variance.sqrt()
    assert torch.equal(model.quantizer.encode(z[None, :, None])[:, :, 0], codes)


def test_generation_stops_at_eos_and_at_the_bound(clam):
    model, _ = clam
    model.eval()
    text = torch.randint(1, 257, (1, 5))
    with torch.no_grad():
        model.eos.bias.fill_(50.0)
    assert model.generate(text, None, max_frames=9, sampling=SamplingConfig()).shape == (1, 4, 0)
    assert model.generate(text, None, max_frames=9, min_frames=3, sampling=SamplingConfig()).shape == (1, 4, 3)
    with torch.no_grad():
        model.eos.bias.fill_(-50.0)
    codes = model.generate(text, None, max_frames=9, sampling=SamplingConfig())
    assert codes.shape == (1, 4, 9) and codes.max() < model.config.codebook_size


def test_codec_checks(clam, tmp_path):
    model, codec = clam
    model.check_codec(codec)
    other = MelVAE(PRESETS["mel-vae-tiny"])
    with pytest.raises(CheckpointError, match="differ"):
        model.check_codec(other)
    from longseq.speech.codecs.mel import PRESETS as MEL_PRESETS
    from longseq.speech.codecs.mel import MelCodec

    with pytest.raises(CheckpointError, match="Mel-VAE"):
        model.attach_codec(MelCodec(MEL_PRESETS["mel-tiny"]))
    with pytest.raises(CheckpointError, match="codebooks"):
        from_pretrained("clam-tts-tiny", n_codebooks=3).attach_codec(codec)
    model.save_pretrained(tmp_path / "clam")
    loaded = ClamTTS.from_pretrained(tmp_path / "clam")
    loaded.check_codec(codec)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


# CLI


@pytest.fixture(scope="module")
def clam_model(synthetic_corpus, mel_vae_codec, quick_train, tmp_path_factory):
    """A clam-tts-tiny model over the tiny Mel-VAE, trained a few steps on the synthetic corpus."""
    out = tmp_path_factory.mktemp("clam") / "tts"
    args = ["--model", "clam-tts-tiny", "--data.corpus", str(synthetic_corpus), "--codec", str(mel_vae_codec)]
    assert main(["train", *args, "--output", str(out), *quick_train]) == 0
    return out


def test_train_and_synth(clam_model, tmp_path, capsys):
    from longseq.core.checkpoint import read_config

    assert read_config(clam_model)["codec"] == "codec" and read_config(clam_model / "codec")["model_type"] == "mel_vae"
    out = tmp_path / "clam.wav"
    synth = ["synth", "--model", str(clam_model), "--text", "Hello, CLaM.", "--output", str(out), "--seed", "1"]
    assert main([*synth, "--max-seconds", "1"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert sf.info(out).samplerate == 24_000
    # A voice prompt (with its transcript) continues in that voice.
    t = np.arange(36_000) / 24_000
    sf.write(tmp_path / "prompt.wav", (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24_000)
    prompt = ["--prompt-audio", str(tmp_path / "prompt.wav"), "--prompt-text", "a prompt"]
    assert main([*synth, "--max-seconds", "1", *prompt]) == 0


def test_synth_refuses_a_model_whose_codec_changed(clam_model, tmp_path, capsys):
    import shutil

    copy = tmp_path / "tts"
    shutil.copytree(clam_model, copy)
    MelVAE(PRESETS["mel-vae-tiny"]).save_pretrained(copy / "codec")
    out = tmp_path / "o.wav"
    assert main(["synth", "--model", str(copy), "--text", "hi", "--output", str(out)]) == 2
    assert "codebooks differ" in one_line_error(capsys)
    assert main(["synth", "--model", str(clam_model), "--output", str(out), "--minutes", "1"]) == 2
    assert "needs a SpeechSSM model" in one_line_error(capsys)
    assert not out.exists()
