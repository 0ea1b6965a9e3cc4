"""MixerStack: a step loop equals the parallel forward for every mixer kind; chunked prefill too."""

import pytest
import torch

from longseq.core.stack import MixerStack, make_mixer


@pytest.mark.parametrize("mixer", ["attention", "mamba", "mamba2", "hyena"])
@torch.no_grad()  # decoding, as in generation (the recurrent states are updated in place)
def test_step_loop_and_prefill_equal_forward(mixer):
    stack = MixerStack(16, 2, mixer=mixer, max_seqlen=12, num_heads=2, headdim=8, mlp_ratio=2.0).eval()
    x = torch.randn(2, 12, 16)
    full = stack(x)
    state = stack.init_state(2)
    steps = torch.stack([stack.step(x[:, t], state) for t in range(12)], dim=1)
    torch.testing.assert_close(steps, full, atol=2e-5, rtol=1e-4)
    state = stack.init_state(2)
    parts = [stack(x[:, :5], state), *(stack.step(x[:, t], state).unsqueeze(1) for t in range(5, 12))]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=2e-5, rtol=1e-4)


def test_rejects_unknown_mixer_and_empty_stack():
    with pytest.raises(ValueError, match="unknown mixer"):
        make_mixer("rwkv", 16, max_seqlen=8)
    with pytest.raises(ValueError, match="n_layers"):
        MixerStack(16, 0, max_seqlen=8)
