import numpy as np
import pytest
import soundfile as sf
import torch

from longseq.core.registry import from_pretrained
from longseq.speech.cli import main
from longseq.speech.longform import WindowedDecoder, check_minutes, continue_speech
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.models.speechssm import SpeechSSM, delay, undelay

GREEDY = SamplingConfig(top_p=0.0)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tts: error:")
    return err


@pytest.fixture
def model() -> SpeechSSM:
    torch.manual_seed(0)
    return from_pretrained("speechssm-tiny").eval()


def random_columns(model, length, batch=1):
    return torch.randint(model.config.codebook_size + 1, (batch, model.config.n_codebooks, length))


def test_delay_pattern_round_trips_and_puts_codebook_j_j_steps_late():
    codes = torch.randint(16, (2, 4, 9))
    grid = delay(codes, 16)
    assert grid.shape == (2, 4, 12)
    assert torch.equal(undelay(grid), codes)
    for j in range(4):
        assert torch.equal(grid[:, j, j : j + 9], codes[:, j])
        assert (grid[:, j, :j] == 16).all() and (grid[:, j, j + 9 :] == 16).all()


def test_causal_over_columns(model):
    columns = random_columns(model, 40)
    changed = columns.clone()
    changed[:, :, 25:] = (changed[:, :, 25:] + 1) % model.config.codebook_size
    with torch.no_grad():
        a, b = model(columns), model(changed)
    torch.testing.assert_close(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_step_and_chunked_passes_equal_the_parallel_pass(model):
    """Past the attention window (16 columns), so the ring-buffer cache wraps around."""
    columns = random_columns(model, 50)
    with torch.no_grad():
        full = model(columns)
        states = model.init_states(1)
        steps = torch.stack([model.step(columns[:, :, i], states) for i in range(50)], dim=1)
        states = model.init_states(1)
        chunks = torch.cat([model(columns[:, :, :23], states), model(columns[:, :, 23:], states)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(chunks, full, atol=1e-5, rtol=1e-4)


def state_tensors(states) -> list[torch.Tensor]:
    return [v for state in states for v in vars(state).values() if isinstance(v, torch.Tensor)]


def test_decoding_state_has_a_constant_size(model):
    states = model.init_states(1)
    shapes = [t.shape for t in state_tensors(states)]
    assert any(t.shape[2] == model.config.attention_window for t in state_tensors(states) if t.dim() == 4)
    with torch.no_grad():
        for _ in range(3 * model.config.attention_window + 5):
            model.step(random_columns(model, 1)[:, :, 0], states)
    assert [t.shape for t in state_tensors(states)] == shapes


def reference_greedy(model, prompt, n_frames):
    """Greedy continuation by re-running the whole delayed grid for every column (no state)."""
    k, empty = model.config.n_codebooks, model.config.empty
    tp = prompt.shape[-1]
    grid = delay(torch.cat([prompt, prompt.new_zeros(1, k, n_frames)], dim=-1), empty)
    for index in range(tp, tp + n_frames + k - 1):
        inputs = torch.nn.functional.pad(grid[..., :index], (1, 0), value=empty)
        column = model(inputs)[0, -1].argmax(-1)
        for j in range(k):
            if tp <= index - j < tp + n_frames:
                grid[0, j, index] = column[j]
    return undelay(grid)[..., tp:]


def test_streamed_greedy_continuation_equals_the_stateless_reference(model):
    prompt = torch.randint(model.config.codebook_size, (1, model.config.n_codebooks, 6))
    with torch.no_grad():
        expected = reference_greedy(model, prompt, 16)
    streamed = model.generate(prompt, max_frames=16, sampling=GREEDY)
    assert torch.equal(streamed, expected)
    unprompted = model.generate(None, max_frames=5, sampling=SamplingConfig(), generator=torch.Generator())
    assert unprompted.shape == (1, 4, 5) and unprompted.max() < model.config.codebook_size


def test_loss_reaches_every_parameter_and_fits_a_batch(model):
    model.train()
    codes = torch.randint(model.config.codebook_size, (2, model.config.n_codebooks, 20))
    loss, accuracy = model.loss(codes)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert 0.0 <= float(accuracy) <= 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = float(loss.detach())
    for _ in range(10):
        optimizer.zero_grad()
        loss, _ = model.loss(codes)
        loss.backward()
        optimizer.step()
    assert float(model.loss(codes)[0].detach()) < 0.5 * first


class FrameCodec:
    """A codec whose every frame decodes on its own (to a constant of the frame's first code), so windowed
    decoding must reproduce decoding everything at once exactly."""

    sample_rate, samples_per_frame, frame_rate = 100, 8, 12.5

    def decode(self, codes):
        return codes[:, :1].float().repeat_interleave(8, dim=-1) / 16


@pytest.mark.parametrize("overlap", [0, 3])
def test_windowed_decoding_joins_windows_seamlessly(overlap):
    frames = torch.randint(16, (4, 47))
    decoder = WindowedDecoder(FrameCodec(), window=10, overlap=overlap)
    pieces = [decoder.push(frames[:, i]) for i in range(47)] + [decoder.flush()]
    wav = torch.cat(pieces)
    torch.testing.assert_close(wav, FrameCodec().decode(frames[None])[0, 0])
    assert decoder.windows == -(-(47 - overlap) // (10 - overlap))
    with pytest.raises(ValueError, match="overlap"):
        WindowedDecoder(FrameCodec(), window=10, overlap=5)


def test_continue_speech_writes_exactly_the_requested_duration(model, tmp_path):
    seen = []
    out = tmp_path / "long.wav"
    result = continue_speech(
        model, FrameCodec(), out, minutes=0.1, sampling=SamplingConfig(), seed=0, progress=False, on_frame=seen.append
    )
    assert result.frames == len(seen) == 75 and sf.info(out).frames == 600 and result.seconds == 6.0
    # window 4 s = 50 frames, overlap 0.4 s = 5 frames: windows start every 45 frames
    assert result.windows == 2
    with pytest.raises(Exception, match="minutes"):
        check_minutes(0)
    with pytest.raises(Exception, match="minutes"):
        continue_speech(model, FrameCodec(), tmp_path / "x.wav", minutes=61, progress=False)
    assert not (tmp_path / "x.wav").exists()


def test_training_segments_wrap_around_their_speakers_stream(tmp_path):
    from longseq.speech.data.codes import EncodedCorpus
    from longseq.speech.tasks.speechssm import CodeSegments

    codes = [torch.arange(10).repeat(2, 1) + 100 * i for i in range(3)]
    corpus = EncodedCorpus(
        codes=codes,
        texts=["a", "b", "c"],
        speakers=["s0", "s0", "s1"],
        splits=["train"] * 3,
        codec="x",
        frame_rate=25.0,
    )
    segments = CodeSegments(corpus, [0, 1, 2], n_codebooks=1, segment_frames=25, seed=3)
    assert len(segments) == 30 // 25
    streams = {"s0": torch.cat([codes[0][0], codes[1][0]]), "s1": codes[2][0]}
    for i in range(5):
        segment = segments[i][0]
        assert segment.shape == (25,) and torch.equal(segment, segments[i][0])
        stream = streams["s1"] if segment[0] >= 200 else streams["s0"]
        start = int((stream == segment[0]).nonzero()[0])
        assert torch.equal(segment, stream[(start + torch.arange(25)) % len(stream)])


# CLI


@pytest.fixture(scope="module")
def ssm_model(synthetic_corpus, mel_vae_codec, quick_train, tmp_path_factory):
    """A speechssm-tiny model over the tiny Mel-VAE (12.5 Hz), trained a few steps on the synthetic corpus."""
    out = tmp_path_factory.mktemp("ssm") / "ssm"
    args = ["--model", "speechssm-tiny", "--data.corpus", str(synthetic_corpus), "--codec", str(mel_vae_codec)]
    assert main(["train", *args, "--output", str(out), *quick_train]) == 0
    return out


def test_train_and_continue_for_minutes(ssm_model, tmp_path, capsys):
    from longseq.core.checkpoint import read_config

    assert read_config(ssm_model)["codec"] == "codec"
    out = tmp_path / "long.wav"
    synth = ["synth", "--model", str(ssm_model), "--output", str(out), "--seed", "1"]
    assert main([*synth, "--minutes", "0.02"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert sf.info(out).frames == 1.2 * 24_000
    t = np.arange(36_000) / 24_000
    sf.write(tmp_path / "prompt.wav", (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24_000)
    assert main([*synth, "--minutes", "0.01", "--prompt-audio", str(tmp_path / "prompt.wav")]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--minutes", "0"], "--minutes must lie in"),
        (["--minutes", "61"], "--minutes must lie in"),
        (["--minutes", "1", "--text", "hello"], "drop --text"),
        (["--minutes", "1", "--prompt-audio", "LONG"], "more than the model's 4-s window"),
        (["--minutes", "1", "--prompt-audio", "MISSING"], "MISSING"),
        (["--minutes", "1", "--prompt-audio", "NAN"], "NaN or infinite"),
        (["--minutes", "1", "--prompt-audio", "LONG", "--output", "LONG"], "would overwrite the input"),
        (["--text", "hello"], "continues speech without text"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(ssm_model, tmp_path, capsys, extra, message):
    t = np.arange(5 * 24_000) / 24_000
    sf.write(tmp_path / "long.wav", (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24_000)
    sf.write(tmp_path / "nan.wav", np.full(36_000, np.nan, np.float32), 24_000, subtype="FLOAT")
    out = tmp_path / "out.wav"
    files = {"LONG": tmp_path / "long.wav", "MISSING": tmp_path / "MISSING", "NAN": tmp_path / "nan.wav"}
    extra = [str(files.get(a, a)) for a in extra]
    assert main(["synth", "--model", str(ssm_model), "--output", str(out), *extra]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()
