"""The patch decoder: nothing leaks from the future, cached generation equals recomputation, checkpointing
changes nothing, every parameter learns."""

import itertools

import pytest
import torch

from longseq.core.hierarchical import PatchDecoder
from longseq.core.stack import MixerStack

LAYOUTS = {"2-stage": ((4, 3), (32, 16)), "3-stage": ((3, 2, 3), (32, 24, 16))}
MIXERS = ["attention", "mamba", "mamba2", "hyena"]


def make_decoder(layout, mixers, variant, **kwargs):
    seq_lens, dims = LAYOUTS[layout]
    stages = [
        MixerStack(
            d,
            2 if mixer == "attention" else 1,
            mixer=mixer,
            max_seqlen=p + 1,
            num_heads=2,
            headdim=8,
            mlp_ratio=2.0 if mixer == "attention" else 0.0,
        )
        for d, p, mixer in zip(dims, seq_lens, mixers)
    ]
    return PatchDecoder(stages, seq_lens=seq_lens, vocab_size=23, variant=variant, **kwargs).eval()


def cases():
    for layout, variant in itertools.product(LAYOUTS, ["megabyte", "mblm"]):
        n = len(LAYOUTS[layout][0])
        for mixer in MIXERS:
            yield pytest.param(layout, variant, [mixer] * n, id=f"{layout}-{variant}-{mixer}")
        hybrid = (["mamba"] + ["attention"] * (n - 1))[:n]
        yield pytest.param(layout, variant, hybrid, id=f"{layout}-{variant}-hybrid")


@pytest.mark.parametrize("layout, variant, mixers", list(cases()))
def test_no_future_leak(layout, variant, mixers):
    # float64: the FFT convolution of Hyena mixes rounding noise from every position into every output
    model = make_decoder(layout, mixers, variant, pos_emb=[True] * len(mixers)).double()
    context = model.context
    ids = torch.randint(0, 23, (2, context - 1))
    logits = model(ids)
    assert logits.shape == (2, context - 1, 23)
    for t in sorted({1, model.unit_sizes[0], int(torch.randint(2, context - 2, ()))}):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1 + torch.randint(0, 21, (2,))) % 23
        other = model(changed)
        torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-12)
        assert (other[:, t + 1 :] - logits[:, t + 1 :]).abs().max() > 1e-4, "later outputs ignore the change"


@pytest.mark.parametrize("layout, variant, mixers", list(cases()))
def test_prefill_and_steps_equal_forward(layout, variant, mixers):
    model = make_decoder(layout, mixers, variant, pos_emb=[True] * len(mixers))
    ids = torch.randint(0, 23, (2, model.context - 1))
    full = model(ids)
    # the empty prompt, and a fresh random prompt length each run (unit boundaries or not)
    for p in (0, int(torch.randint(1, model.context - 2, ()))):
        state = model.init_state()
        outs = [model.prefill(ids[:, :p], state)]
        outs += [model.step(ids[:, t], state) for t in range(p, ids.shape[1] - 1)]
        torch.testing.assert_close(torch.stack(outs, dim=1), full[:, p:], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["megabyte", "mblm"])
def test_cached_greedy_generation_equals_uncached(variant):
    model = make_decoder("3-stage", ["attention", "mamba", "attention"], variant)
    prompt = torch.randint(0, 23, (2, 5))
    new = model.context - 5
    cached = model.generate(prompt, new)
    uncached = model.generate(prompt, new, use_cache=False)
    assert cached.shape == (2, model.context)
    assert torch.equal(cached, uncached)


def test_sampling_is_reproducible_with_a_generator():
    model = make_decoder("2-stage", ["attention", "attention"], "mblm")
    prompt = torch.randint(0, 23, (1, 3))
    runs = [
        model.generate(prompt, 6, do_sample=True, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(*runs)


@pytest.mark.parametrize("variant", ["megabyte", "mblm"])
def test_every_parameter_gets_a_gradient(variant):
    model = make_decoder("3-stage", ["attention", "mamba", "hyena"], variant, pos_emb=[True, True, True]).train()
    ids = torch.randint(0, 23, (2, model.context))
    logits = model(ids)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_checkpoint_chunks_change_nothing():
    model = make_decoder("3-stage", ["attention", "attention", "mamba"], "mblm").train()
    chunked = make_decoder("3-stage", ["attention", "attention", "mamba"], "mblm", checkpoint_chunks=[2, 3]).train()
    chunked.load_state_dict(model.state_dict())
    ids = torch.randint(0, 23, (2, model.context))
    grads = []
    for m in (model, chunked):
        loss = torch.nn.functional.cross_entropy(m(ids).flatten(0, 1), ids.flatten())
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in m.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(grad, grads[1][1][name], msg=name)


def test_megabyte_paper_embedding_and_split_projection():
    """Concatenated byte embeddings as the global patch (no projection) and the shared W^GL per slice."""
    stages = [MixerStack(24, 1, max_seqlen=5, num_heads=2), MixerStack(16, 1, max_seqlen=5, num_heads=2)]
    model = PatchDecoder(
        stages, seq_lens=(4, 3), variant="megabyte", patch_embed_dim=8, patch_proj=False, split_proj=True
    ).eval()
    assert model.embeds[0].weight.shape == (256, 8) and model.to_next[0].weight.shape == (16, 8)
    ids = torch.randint(0, 256, (1, 11))
    state = model.init_state()
    outs = [model.prefill(ids[:, :2], state)] + [model.step(ids[:, t], state) for t in range(2, 10)]
    torch.testing.assert_close(torch.stack(outs, dim=1), model(ids)[:, 2:], atol=2e-5, rtol=1e-4)


def test_rejects_bad_configurations_and_inputs():
    stage = MixerStack(16, 1, max_seqlen=5)
    with pytest.raises(ValueError, match="seq_len per stage"):
        PatchDecoder([stage], seq_lens=(4, 2))
    with pytest.raises(ValueError, match="variant"):
        PatchDecoder([stage], seq_lens=(4,), variant="perceiver")
    with pytest.raises(ValueError, match="patch_embed_dim"):
        PatchDecoder([MixerStack(16, 1, max_seqlen=5), stage], seq_lens=(4, 3), patch_proj=False)
    model = PatchDecoder([MixerStack(16, 1, max_seqlen=5), stage], seq_lens=(4, 3))
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="exceed the context"):
        model.generate(torch.zeros(1, 10, dtype=torch.long), 3)
