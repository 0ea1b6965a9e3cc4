"""The cross-check that keeps the converters from drifting: random models of other shapes built in mblm and
MEGABYTE-pytorch themselves (2 and 3 stages, transformer and, mblm on the CPU, mambapy Mamba stages), written
as their users write them, read with `longseq.from_pretrained`, and compared on logits, loss, the empty
prompt and greedy generation. Slow: the packages' generate recomputes everything for every byte."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from longseq import from_pretrained
from longseq.bytes.convert import MBLM_VERSION

pytestmark = pytest.mark.slow
ATOL = 1e-5


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Noise on every tensor: constant initialisations (norm gains, zero pad rows) would hide a wrong mapping."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def differences(ours, package_logits, package_loss, ids) -> dict[str, float]:
    """Largest absolute differences from the package: logits on ids (b, context) and on a ragged prefix, the
    loss, and the prediction after an empty prompt (``package_logits`` of an empty input)."""
    diff = lambda a, b: float((a - b).abs().max())  # noqa: E731
    short = ids[:, : ids.shape[1] * 2 // 3 + 1]  # not a whole number of patches
    empty = ids[:1, :0]
    with torch.no_grad():
        return {
            "logits": diff(ours(ids), package_logits(ids)),
            "logits ragged": diff(ours(short), package_logits(short)),
            "loss": diff(ours.loss(ids), package_loss(ids)),
            "empty prompt": diff(ours.decoder.prefill(empty, ours.decoder.init_state()), package_logits(empty)[:, 0]),
        }


def _check(found: dict[str, float]) -> None:
    assert max(found.values()) <= ATOL, found


def _mblm_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "falling back to Mamba1": mamba_ssm needs CUDA, mblm then runs mambapy
        import mblm

    return mblm


def _transformer(mblm, **options):
    defaults = {"attn_head_dims": 8, "attn_num_heads": 2, "attn_use_rot_embs": True, "ff_multiplier": 2}
    return mblm.TransformerBlock(**{**defaults, **options})


def _mamba(mblm, **options):
    return mblm.MambaBlock(**{"d_state": 8, "d_conv": 4, "expand": 2, "headdim": 8, **options})


def _mblm_shapes(mblm):
    t = lambda **o: _transformer(mblm, **o)  # noqa: E731
    return {
        "tt": (  # 2 transformer stages, no rotary in the global one
            [32, 16],
            [2, 1],
            [8, 4],
            [t(attn_use_rot_embs=False, attn_num_heads=4, pos_emb_type="fixed"), t(ff_multiplier=3)],
        ),
        "ttt-rope": (  # 3 transformer stages, rotary unit positions
            [24, 20, 16],
            [1, 2, 1],
            [4, 3, 4],
            [
                t(pos_emb_type="rope"),
                t(attn_head_dims=6, attn_num_heads=3, pos_emb_type="fixed"),
                t(pos_emb_type="rope"),
            ],
        ),
        "st": (  # a Mamba global stage, a transformer local stage
            [32, 16],
            [2, 1],
            [8, 4],
            [_mamba(mblm), t()],
        ),
        "tst": (  # 3 stages, Mamba in the middle
            [24, 16, 16],
            [1, 2, 1],
            [4, 3, 4],
            [t(pos_emb_type="fixed"), _mamba(mblm, d_state=4, pos_emb_type="rope"), t(attn_num_heads=1)],
        ),
    }


MBLM_CASES = ["tt", "ttt-rope", "st", "tst"]  # the keys of _mblm_shapes


def mblm_pair(case: str, directory: Path):
    """A perturbed random mblm model, written as mblm's trainer writes it into ``directory`` and read back.

    Returns:
        (package model, our model, package logits fn, package loss fn, ids with padded rows).
    """
    mblm = _mblm_module()
    index = MBLM_CASES.index(case)
    dims, layers, lens, blocks = _mblm_shapes(mblm)[case]
    torch.manual_seed(index)
    config = mblm.MBLMModelConfig(
        num_tokens=257,
        pad_token_id=256,
        hidden_dims=dims,
        num_layers=layers,
        seq_lens=lens,
        train_checkpoint_chunks=None,
        block=blocks,
    )
    package = mblm.MBLM(config)
    _perturb(package, index)
    package.eval()
    # what mblm's trainer writes (mblm.utils.io.save_model_state) and its config
    torch.save({"MODEL": package.state_dict(), "LOSS": 0.0}, directory / "model.pth")
    dump = {"package": "mblm", "package_version": MBLM_VERSION, "config": config.model_dump(mode="json")}
    (directory / "config.json").write_text(json.dumps(dump))
    ours = from_pretrained(directory)
    ids = torch.randint(0, 256, (2, ours.context))
    ids[1, -5:] = 256  # padded rows: pad ids are inputs but never targets
    logits_type, loss_type = mblm.MBLMReturnType.LOGITS, mblm.MBLMReturnType.LOSS
    return (
        package,
        ours,
        lambda x: package(x, return_type=logits_type),
        lambda x: package(x, return_type=loss_type),
        ids,
    )


@pytest.mark.parametrize("case", MBLM_CASES)
def test_random_mblm_models_match_the_package(case, tmp_path):
    package, ours, logits, loss, ids = mblm_pair(case, tmp_path)
    _check(differences(ours, logits, loss, ids))
    for prompt in (ids[0, :5], ids[0, :0]):  # the empty prompt takes the packages' `forward_empty`
        new = min(ours.context - len(prompt), 12)
        expected = package.generate(prompt, num_tokens_to_generate=new, filter_thres=1.0, enable_progress=False)
        pad = (expected == 256).nonzero()  # the package may pick its pad id; ours generates bytes only
        expected = expected[: int(pad[0]) if len(pad) else None]
        got = ours.generate(prompt[None], new)[0, : len(expected)]
        assert torch.equal(got, expected), case


MEGABYTE_SHAPES = {
    "2 stages, one width, no positions": {"dim": 32, "depth": (1, 2), "max_seq_len": (8, 4), "dim_head": 8, "heads": 4},
    "3 stages, odd widths, rotary and positions": {
        "dim": (30, 21, 15),
        "depth": (2, 1, 1),
        "max_seq_len": (4, 3, 4),
        "dim_head": 6,
        "heads": 2,
        "rel_pos": True,
        "pos_emb": True,
        "ff_mult": 3,
    },
}


def megabyte_pair(case: str, directory: Path):
    """A perturbed random MEGABYTE-pytorch model, saved as its users save it into ``directory`` and read back.

    Returns:
        (package model, our model, package logits fn, package loss fn, ids with padded rows).
    """
    from MEGABYTE_pytorch import MEGABYTE

    kwargs = {"num_tokens": 256, "pad_id": 0, **MEGABYTE_SHAPES[case]}
    torch.manual_seed(1)
    package = MEGABYTE(**kwargs)
    _perturb(package, 1)
    package.eval()
    torch.save(package.state_dict(), directory / "megabyte.pt")  # no helper of its own: what users write
    (directory / "config.json").write_text(json.dumps(kwargs))  # the bare constructor arguments
    ours = from_pretrained(directory)
    ids = torch.randint(1, 256, (2, ours.context))
    ids[1, -4:] = 0
    return package, ours, package, lambda x: package(x, return_loss=True), ids


@pytest.mark.parametrize("case", MEGABYTE_SHAPES)
def test_random_megabyte_pytorch_models_match_the_package(case, tmp_path):
    package, ours, logits, loss, ids = megabyte_pair(case, tmp_path)
    _check(differences(ours, logits, loss, ids))
    prompt = ids[:1, :5]
    expected = package.generate(prompt, filter_thres=1.0).flatten()[None]  # to the whole context
    assert torch.equal(ours.generate(prompt, ours.context - 5), expected)
