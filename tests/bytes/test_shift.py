"""The packages' transformer (`ShiftTransformer`) and the MBLM options that follow the packages: cached steps equal
the full forward, the token shift and the norm as specified, our format keeps the options."""

import pytest
import torch

from longseq import from_pretrained
from longseq.bytes import MBLM, MBLMConfig, StageConfig
from longseq.bytes.models.shift import ClampedRMSNorm, ShiftTransformer, token_shift


def test_token_shift_moves_the_second_half_by_one_position():
    x = torch.arange(2 * 3 * 5, dtype=torch.float64).view(2, 3, 5)  # d = 5: channels 0-2 stay, 3-4 shift
    y = token_shift(x)
    assert torch.equal(y[..., :3], x[..., :3])
    assert torch.equal(y[:, 1:, 3:], x[:, :-1, 3:]) and not y[:, 0, 3:].any()
    previous = torch.full((2, 5), 7.0, dtype=torch.float64)
    assert torch.equal(token_shift(x, previous)[:, 0, 3:], previous[:, 3:])


def test_clamped_rms_norm():
    norm = ClampedRMSNorm(4).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[3.0, 8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64) / 2.5  # |x| / 2
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-15)  # a zero vector stays 0 (no NaN)


def test_steps_continue_a_prefill_exactly():
    torch.manual_seed(0)
    stack = ShiftTransformer(15, 2, num_heads=3, head_dim=4, mlp_ratio=2.0, max_seqlen=12).double().eval()
    x = torch.randn(2, 9, 15, dtype=torch.float64)
    full = stack(x)
    state = stack.init_state(2, dtype=torch.float64)
    parts = [stack(x[:, :4], state)] + [stack.step(x[:, t], state)[:, None] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-12)


def _package_like() -> MBLM:
    shift = {"block": "lucidrains", "n_layers": 1}
    return MBLM(
        MBLMConfig(
            stages=[
                StageConfig(**shift, d_model=24, seq_len=6, num_heads=2, head_dim=8, pos_rope=True),
                StageConfig(mixer="mamba", d_model=16, n_layers=1, seq_len=3, mlp_ratio=0.0, final_norm=False),
                StageConfig(**shift, d_model=12, seq_len=4, num_heads=3, pos_emb=True),
            ],
            vocab_size=257,
            pad_id=256,
            empty_start_context=True,
        )
    ).eval()


def test_package_options_cache_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _package_like()
    prompt = torch.randint(0, 256, (1, 5))
    assert torch.equal(model.generate(prompt, 8), model.generate(prompt, 8, use_cache=False))  # 12-byte units
    empty = prompt[:, :0]
    assert torch.equal(model.generate(empty, 5), model.generate(empty, 5, use_cache=False))
    model.save_pretrained(tmp_path / "m")
    again = from_pretrained(tmp_path / "m")
    assert again.config == model.config
    ids = torch.randint(0, 257, (2, model.context))
    torch.testing.assert_close(again(ids), model(ids), rtol=0, atol=0)


def test_the_loss_leaves_the_pad_id_out():
    torch.manual_seed(0)
    model = _package_like()
    ids = torch.randint(0, 256, (1, 30))
    padded = torch.cat((ids, torch.full((1, 6), 256)), dim=1)
    torch.testing.assert_close(model.loss(padded), model.loss(ids))  # pad targets add nothing
    bits = model.position_bits(ids)
    torch.testing.assert_close(model.loss(ids), bits.mean() * torch.log(torch.tensor(2.0)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"block": "lucidrains", "mixer": "mamba"}, "full causal attention"),
        ({"block": "lucidrains", "window": 8}, "full causal attention"),
        ({"head_dim": 8}, "'lucidrains' block only"),
        ({"pos_emb": True, "pos_rope": True}, "not both"),
        ({"pos_rope": True, "d_model": 15, "num_heads": 3}, "even"),
        ({"block": "other"}, "'prenorm' or 'lucidrains'"),
    ],
)
def test_stage_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        StageConfig(**{"d_model": 16, "n_layers": 1, "seq_len": 4, **options})
