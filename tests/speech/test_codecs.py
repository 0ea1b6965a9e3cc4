import pytest
import torch

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.speech.codecs.encodec import BANDWIDTHS, WEIGHTS_FILE, EncodecCodec
from longseq.speech.codecs.mel import PRESETS, MelCodec
from longseq.speech.codecs.rvq import ResidualVQ


@pytest.fixture(scope="module")
def encodec():
    return EncodecCodec(bandwidth=6.0, pretrained=False)


def test_encodec_shapes_random_weights(encodec):
    wav = torch.randn(2, 1, 24_000) * 0.1
    codes = encodec.encode(wav)
    assert codes.shape == (2, 8, 75) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < 1024
    out = encodec.decode(codes)
    assert out.shape == (2, 1, 24_000)
    # Any prefix of the residual stack decodes.
    assert encodec.decode(codes[:, :2]).shape == (2, 1, 24_000)


@pytest.mark.parametrize("bandwidth", sorted(BANDWIDTHS))
def test_encodec_bandwidth_sets_codebooks(bandwidth):
    codec = EncodecCodec(bandwidth=bandwidth, pretrained=False)
    assert codec.n_codebooks == {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}[bandwidth]
    assert codec.encode(torch.zeros(1, 1, 960)).shape == (1, codec.n_codebooks, 3)


def test_encodec_refuses_other_bandwidth():
    with pytest.raises(ValueError, match="bandwidth"):
        EncodecCodec(bandwidth=5.0, pretrained=False)


def test_encodec_loads_local_weights(tmp_path, encodec):
    path = tmp_path / "my_encodec.th"
    torch.save(encodec.model.state_dict(), path)
    loaded = EncodecCodec(bandwidth=6.0, weights=path)
    wav = torch.randn(1, 1, 4800) * 0.1
    torch.testing.assert_close(loaded.encode(wav), encodec.encode(wav), rtol=0, atol=0)


def test_encodec_missing_weights_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE) as err:
        EncodecCodec()
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)


def test_encodec_checksum_mismatch(tmp_path, encodec):
    torch.save(encodec.model.state_dict(), tmp_path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="sha256"):
        EncodecCodec(weights=tmp_path)


def test_codec_refuses_bad_input(encodec):
    with pytest.raises(InputError, match="mono"):
        encodec.encode(torch.zeros(1, 2, 4800))
    with pytest.raises(InputError, match="shorter than one codec frame"):
        encodec.encode(torch.zeros(1, 1, 100))
    with pytest.raises(InputError, match="codes must lie"):
        encodec.decode(torch.full((1, 8, 3), 1024))


def test_mel_codec_forward_backward_and_shapes():
    codec = MelCodec(PRESETS["mel-tiny"])
    wav = torch.randn(2, 1, 9600) * 0.1
    recon, target, codes, commit = codec(wav)
    assert recon.shape == target.shape == (2, 80, 40)
    assert codes.shape == (2, 4, 10)
    (torch.nn.functional.l1_loss(recon, target) + commit).backward()
    trainable = [p for p in codec.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    codec.eval()
    assert codec.encode(wav).shape == (2, 4, 10)
    out = codec.decode(codec.encode(wav))
    assert out.shape == (2, 1, 9600) and torch.isfinite(out).all()
    assert codec.frame_rate == 25.0


def test_mel_codec_save_load_round_trip(tmp_path):
    codec = MelCodec(PRESETS["mel-tiny"])
    codec.train()
    codec(torch.randn(2, 1, 9600) * 0.1)  # initialises the codebooks from the batch
    codec.eval()
    codec.save_pretrained(tmp_path / "codec")
    loaded = MelCodec.from_pretrained(tmp_path / "codec")
    wav = torch.randn(1, 1, 4800) * 0.1
    torch.testing.assert_close(loaded.encode(wav), codec.encode(wav), rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode_mel(codec.encode(wav)), codec.decode_mel(codec.encode(wav)))


def test_mel_codec_griffin_lim_inverts_true_mel():
    codec = MelCodec(PRESETS["mel-tiny"])
    t = torch.arange(24_000) / 24_000
    wav = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.2 * torch.sin(2 * torch.pi * 1330 * t)).view(1, 1, -1)
    mel = codec.mel(wav)
    back = codec.log_mel.invert(mel, n_iter=32, power=1.0)
    assert back.shape == (1, 1, mel.shape[-1] * 240)
    # The re-analysed mel matches (noise of the same level is an order of magnitude further off).
    error = (codec.mel(back) - mel).abs().mean()
    noise_error = (codec.mel(0.1 * torch.randn_like(wav)) - mel).abs().mean()
    assert error < 0.2 < noise_error / 5


def test_rvq_learns_clusters_and_prefixes_decode():
    torch.manual_seed(0)
    centers = torch.randn(8, 4) * 3
    rvq = ResidualVQ(4, 2, 8, decay=0.8, quantizer_dropout=0.0)
    data = centers[torch.randint(8, (512,))] + 0.05 * torch.randn(512, 4)
    z = data.T.unsqueeze(0)  # (1, 4, 512)
    rvq.train()
    for _ in range(30):
        quantized, codes, loss = rvq(z)
    rvq.eval()
    codes = rvq.encode(z)
    assert codes.shape == (1, 2, 512)
    error_one = (rvq.decode(codes[:, :1]) - z).pow(2).mean()
    error_two = (rvq.decode(codes) - z).pow(2).mean()
    assert error_two <= error_one < 0.5 * z.var()
    quantized, _, loss = rvq(z)
    torch.testing.assert_close(quantized, rvq.decode(codes))
