import pytest
import torch

from longseq.speech.codecs import load_codec
from longseq.speech.codecs.mel_vae import PRESETS, MelVAE
from longseq.speech.codecs.prob_rvq import ProbabilisticRVQ
from longseq.speech.codecs.rvq import EMACodebook


def random_quantizer(dim=4, depth=3, size=8) -> ProbabilisticRVQ:
    """Distinct random codewords (ties would split the posterior) of shrinking scale, sigma^2 = 0.1."""
    quantizer = ProbabilisticRVQ(dim, depth, size, decay=0.8)
    for d, codebook in enumerate(quantizer.codebooks):
        codebook.embed.copy_(torch.randn(size, dim) * 0.5**d)
        codebook.embed_sum.copy_(codebook.embed)
    quantizer.variance.fill_(0.1)
    return quantizer.eval()


# probabilistic RVQ


def test_posterior_normalises_and_residuals_add_back():
    quantizer = random_quantizer()
    x = torch.randn(50, 4)
    codes, quantized = quantizer.greedy(x)
    q, residuals = quantizer.posterior(x, codes)
    assert q.shape == (50, 3, 8)
    torch.testing.assert_close(q.sum(-1), torch.ones(50, 3))
    # r_d + e_d(c*_d) is the same for every depth: x minus the other depths = x - q* + e_d(c*_d).
    chosen = torch.stack([cb.lookup(codes[:, d]) for d, cb in enumerate(quantizer.codebooks)], 1)
    torch.testing.assert_close(residuals - chosen, (x - quantized)[:, None].expand(-1, 3, -1))


def test_soft_update_is_hard_ema_in_the_zero_variance_limit():
    quantizer = random_quantizer()
    x = torch.randn(40, 4)
    codes, _ = quantizer.greedy(x)
    q, residuals = quantizer.posterior(x, codes, variance=1e-6)
    for d, codebook in enumerate(quantizer.codebooks):
        hard = EMACodebook(4, 8, decay=0.8, dead_threshold=0.0)
        hard.load_state_dict(codebook.state_dict())
        soft = EMACodebook(4, 8, decay=0.8, dead_threshold=0.0)
        soft.load_state_dict(codebook.state_dict())
        hard.update(residuals[:, d], codebook.nearest(residuals[:, d]))
        soft.update(residuals[:, d], q[:, d])
        torch.testing.assert_close(soft.embed, hard.embed)


def test_every_codeword_moves_under_the_posterior_but_not_under_hard_assignments():
    x = torch.randn(64, 4) * 0.1
    far = torch.full((4,), 5.0)  # a codeword no vector is nearest to
    moved = {}
    for soft in (True, False):
        codebook = EMACodebook(4, 4, decay=0.5, dead_threshold=0.0)
        codebook.initialize(x)
        codebook.embed[0], codebook.embed_sum[0] = far, far
        assert not (codebook.nearest(x) == 0).any()
        weights = torch.softmax(-codebook.distances(x) / (2 * 10.0), dim=-1) if soft else codebook.nearest(x)
        codebook.update(x, weights)
        moved[soft] = float((codebook.embed[0] - far).norm() / far.norm())
    assert moved[True] > 0.05 and moved[False] < 0.001


def test_prvq_forward_sets_variance_and_passes_gradients():
    quantizer = ProbabilisticRVQ(4, 2, 8)
    z = torch.randn(2, 4, 30, requires_grad=True)
    quantizer.train()
    quantized, codes, loss = quantizer(z)
    assert codes.shape == (2, 2, 30) and quantized.shape == z.shape
    assert quantizer.variance_initialized and 0 < float(quantizer.variance) < float(z.detach().var())
    (quantized.sum() + loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    quantizer.eval()
    torch.testing.assert_close(quantizer(z)[0], quantizer.decode(quantizer.encode(z)))


# Mel-VAE


def test_mel_vae_shapes_round_trip_and_codec_loading(tmp_path):
    codec = MelVAE(PRESETS["mel-vae-tiny"])
    wav = torch.randn(2, 1, 19_200) * 0.1
    codec.train()
    recon, target, codes, commit = codec(wav)
    assert codec.frame_rate == 12.5 and codes.shape == (2, 4, 10) and recon.shape == target.shape == (2, 80, 80)
    (torch.nn.functional.l1_loss(recon, target) + commit).backward()
    assert all(p.grad is not None for p in codec.parameters())
    codec.eval().save_pretrained(tmp_path / "vae")
    loaded = load_codec(str(tmp_path / "vae"))
    assert isinstance(loaded, MelVAE)
    torch.testing.assert_close(loaded.variance, codec.variance)
    torch.testing.assert_close(loaded.encode(wav), codec.encode(wav), rtol=0, atol=0)
    with pytest.raises(ValueError, match="quantizer_dropout"):
        PRESETS["mel-vae-tiny"].__class__(quantizer_dropout=0.5)
