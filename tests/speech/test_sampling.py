import pytest
import torch

from longseq.speech.models.sampling import SamplingConfig, nucleus_sample, repetition_ratio, sample_token


def peaked(token: int, vocab: int = 16, mass: float = 0.5) -> torch.Tensor:
    """Logits where ``token`` has probability ``mass`` and the rest share the remainder evenly."""
    probs = torch.full((vocab,), (1 - mass) / (vocab - 1))
    probs[token] = mass
    return probs.log()


def fraction_other(logits, history, config, token=3, draws=300, seed=0) -> float:
    gen = torch.Generator().manual_seed(seed)
    return sum(sample_token(logits, history, config, generator=gen) != token for _ in range(draws)) / draws


def test_nucleus_top_p_zero_is_greedy_and_top_p_one_is_full():
    logits = torch.randn(50)
    gen = torch.Generator().manual_seed(1)
    assert all(int(nucleus_sample(logits, top_p=0.0, generator=gen)) == int(logits.argmax()) for _ in range(20))
    draws = {int(nucleus_sample(logits, top_p=1.0, generator=gen)) for _ in range(400)}
    assert len(draws) > 10


def test_nucleus_keeps_smallest_set_reaching_top_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    gen = torch.Generator().manual_seed(0)
    draws = {int(nucleus_sample(logits, top_p=0.7, generator=gen)) for _ in range(300)}
    assert draws == {0, 1}
    draws = {int(nucleus_sample(logits, top_p=0.9, top_k=1, generator=gen)) for _ in range(50)}
    assert draws == {0}


def test_repetition_ratio_counts_last_window_only():
    assert repetition_ratio(3, [3, 3, 3] + [1] * 10, window=10) == 0.0
    assert repetition_ratio(3, [1] * 8 + [3, 3], window=10) == 0.2


@pytest.mark.parametrize("variant", ["paper", "common"])
def test_ras_fallback_threshold(variant):
    """Paper: resample when r > t_r (two earlier occurrences in K=10); common variant: r >= t_r (one)."""
    config = SamplingConfig(top_p=0.0, ras=True, ras_window=10, ras_threshold=0.1, ras_variant=variant)
    logits = peaked(3)
    assert fraction_other(logits, [1] * 10, config) == 0.0  # no repetition: the nucleus (greedy) pick stays
    once = fraction_other(logits, [1] * 9 + [3], config)
    twice = fraction_other(logits, [1] * 8 + [3, 3], config)
    # The fallback samples the full distribution, where 3 has probability 0.5.
    assert 0.35 < twice < 0.65
    if variant == "paper":
        assert once == 0.0
    else:
        assert 0.35 < once < 0.65


def test_without_ras_no_fallback():
    config = SamplingConfig(top_p=0.0, ras=False)
    assert fraction_other(peaked(3), [3] * 10, config) == 0.0


def test_ras_breaks_a_degenerate_loop():
    """A 'model' that always prefers repeating its last token loops forever under greedy/low top-p decoding;
    RAS keeps the sequence from being constant."""

    def generate(config, steps=60, seed=0):
        gen = torch.Generator().manual_seed(seed)
        out = [5]
        for _ in range(steps):
            out.append(sample_token(peaked(out[-1], mass=0.6), out, config, generator=gen))
        return out

    plain = generate(SamplingConfig(top_p=0.0, ras=False))
    assert set(plain) == {5}
    ras = generate(SamplingConfig(top_p=0.0, ras=True))
    assert len(set(ras)) > 3
    longest = max(len(run) for run in "".join("x" if a == b else "|" for a, b in zip(ras, ras[1:])).split("|"))
    assert longest < 10


def test_config_validation():
    for bad in ({"top_p": 1.5}, {"temperature": 0.0}, {"top_k": -1}, {"ras_window": 0}, {"ras_variant": "x"}):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)
