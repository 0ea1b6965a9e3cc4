"""Next-token choice: greedy is the argmax; top-k and top-p never pick outside their sets."""

import pytest
import torch

from core.sampling import sample_next


def test_greedy_is_argmax():
    logits = torch.randn(4, 50)
    assert torch.equal(sample_next(logits), logits.argmax(-1))


def test_top_k_and_top_p_stay_inside_their_sets():
    logits = torch.randn(3, 40)
    g = torch.Generator().manual_seed(0)
    top5 = logits.topk(5, dim=-1).indices
    for _ in range(50):
        token = sample_next(logits, do_sample=True, top_k=5, generator=g)
        assert (top5 == token[:, None]).any(-1).all()
    # one dominant token: with top_p 0.5 it is the only candidate
    peaked = torch.zeros(2, 10)
    peaked[:, 3] = 10.0
    for _ in range(20):
        assert torch.equal(sample_next(peaked, do_sample=True, top_p=0.5, generator=g), torch.tensor([3, 3]))


def test_low_temperature_approaches_greedy():
    logits = torch.randn(8, 30)
    token = sample_next(logits, do_sample=True, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(token, logits.argmax(-1))


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        sample_next(torch.randn(1, 5), do_sample=True, **kwargs)
