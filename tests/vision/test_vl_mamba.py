"""VL-Mamba: connectors, image-token splicing, generation, stages, checkpoints, official Mamba LMs."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from longseq import from_pretrained as load_lm
from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.vision.vl_mamba.model import IGNORE_INDEX, IMAGE_TOKEN, PRESETS, Connector, VLMamba, splice_labels
from longseq.vision.vl_mamba.tokenizer import HFTokenizer, WordTokenizer, load_tokenizer

MAMBA_A = Path(__file__).resolve().parents[1] / "fixtures" / "mamba_a"


def _tiny(**overrides) -> VLMamba:
    return VLMamba(dataclasses.replace(PRESETS["vl-mamba-test"], **overrides))


@pytest.mark.parametrize("kind", ["mlp", "vss-mlp", "vss-l2"])
@pytest.mark.parametrize("scan", ["bsm", "csm"])
def test_connectors_map_the_patch_grid_to_lm_tokens(kind, scan):
    connector = Connector(kind, 24, 40, scan=scan, d_state=4)
    features = torch.randn(2, 24, 3, 5, requires_grad=True)
    out = connector(features)
    assert out.shape == (2, 15, 40)
    out.square().sum().backward()
    assert all(p.grad is not None for p in connector.parameters())
    if kind != "mlp":
        assert connector.vss.directions == (("h", "h_flip") if scan == "bsm" else ("h", "v", "h_flip", "v_flip"))


def test_image_tokens_are_spliced_at_the_placeholder():
    model = _tiny()
    ids = torch.tensor([[5, IMAGE_TOKEN, 7, 8], [IMAGE_TOKEN, 9, 9, 0]])
    image_tokens = torch.randn(2, 3, 32)
    embeds = model.embed(ids, image_tokens)
    table = model.lm.backbone.embedding.weight
    assert embeds.shape == (2, 6, 32)
    torch.testing.assert_close(embeds[0, 0], table[5])
    torch.testing.assert_close(embeds[0, 1:4], image_tokens[0])
    torch.testing.assert_close(embeds[0, 4:], table[[7, 8]])
    torch.testing.assert_close(embeds[1, :3], image_tokens[1])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8], [IGNORE_INDEX, 9, 1, IGNORE_INDEX]])
    assert splice_labels(labels, ids, 3).tolist() == [[-100, -100, -100, -100, 7, 8], [-100, -100, -100, 9, 1, -100]]
    with pytest.raises(InputError, match="exactly one <image>"):
        model.embed(torch.tensor([[5, 6]]), image_tokens[:1])


def test_generation_matches_the_parallel_forward():
    """Prefill + recurrent steps give the tokens a full forward over the finished sequence would pick."""
    model = _tiny().eval()
    images = torch.randn(2, 3, 16, 16)
    ids = torch.tensor([[IMAGE_TOKEN, 4, 5], [IMAGE_TOKEN, 6, 7]])
    tokens = model.generate(images, ids, max_new_tokens=5)
    assert tokens.shape == (2, 5)
    full = torch.cat([ids, tokens], dim=1)
    with torch.no_grad():
        logits, _ = model(images, full)
    n = model.encode_images(images).shape[1]
    start = ids.shape[1] - 1 + n  # the position predicting the first new token
    predicted = logits[:, start - 1 : start - 1 + 5, : model.config.lm.vocab_size].argmax(-1)
    assert torch.equal(predicted, tokens)


def test_stages_freeze_the_right_parts_and_the_loss_trains():
    model = _tiny()
    model.set_stage("align")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"connector"}
    model.set_stage("instruct")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"connector", "lm"}
    ids = torch.tensor([[IMAGE_TOKEN, 4, 5, 6]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6]])
    _, loss = model(torch.randn(1, 3, 16, 16), ids, labels)
    loss.backward()
    assert model.connector.proj_in.weight.grad is not None and model.vision.patch_embed.proj.weight.grad is None


def test_configs_validate_and_generation_stays_inside_the_context():
    with pytest.raises(ValueError, match="context must lie in"):
        dataclasses.replace(PRESETS["vl-mamba-test"], context=0)
    with pytest.raises(ValueError, match="vision.depth must be >= 1"):
        dataclasses.replace(PRESETS["vl-mamba-test"].vision, depth=0)
    model = VLMamba(dataclasses.replace(PRESETS["vl-mamba-test"], context=20)).eval()  # 16 image tokens
    ids = torch.tensor([[IMAGE_TOKEN, 3, 4]])
    assert model.generate(torch.randn(1, 3, 16, 16), ids, max_new_tokens=2).shape == (1, 2)
    with pytest.raises(InputError, match=r"max_new_tokens must lie in \[1, 2\]"):
        model.generate(torch.randn(1, 3, 16, 16), ids, max_new_tokens=3)
    with pytest.raises(InputError, match="the image and the prompt take 21 tokens; the model.s context is 20"):
        model.generate(torch.randn(1, 3, 16, 16), torch.tensor([[IMAGE_TOKEN, 1, 2, 3, 4, 5]]), max_new_tokens=1)


def test_bad_images_are_refused():
    model = _tiny()
    with pytest.raises(InputError, match="takes"):
        model.encode_images(torch.randn(1, 3, 20, 20))
    with pytest.raises(InputError, match="RGB"):
        model.encode_images(torch.randn(1, 1, 16, 16))


def test_checkpoint_round_trip_and_a_connector_that_does_not_fit(tmp_path):
    model = _tiny(connector="vss-mlp", scan="csm").eval()
    model.save_pretrained(tmp_path / "m")
    again = VLMamba.from_pretrained(tmp_path / "m").eval()
    images, ids = torch.randn(1, 3, 16, 16), torch.tensor([[IMAGE_TOKEN, 3]])
    with torch.no_grad():
        torch.testing.assert_close(again(images, ids)[0], model(images, ids)[0], rtol=0, atol=0)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["lm"]["d_model"] = 48  # an LM of another width than the trained connector's output
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"does not fit VLMamba: shape mismatch .* \(64, 32\) vs \(64, 48\)"):
        VLMamba.from_pretrained(tmp_path / "m")


def _hf_lm_with_tokenizer(tmp_path) -> Path:
    """The mamba_a Hugging Face LM directory plus a word-level tokenizer.json (tokenizers package)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory = tmp_path / "lm"
    shutil.copytree(MAMBA_A / "hf", directory)
    words = ["<|endoftext|>", "question", ":", "answer", "what", "item", "is", "this", "?", "bag", "shoe"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def test_official_mamba_lm_loads_into_vl_mamba(tmp_path):
    lm_dir = _hf_lm_with_tokenizer(tmp_path)
    config = dataclasses.replace(PRESETS["vl-mamba-test"], connector="vss-l2")
    model = VLMamba.from_parts(config, lm=lm_dir)
    reference = load_lm(lm_dir)
    assert model.config.lm == reference.config and model.connector.proj_out.out_features == 64
    for (name, a), (_, b) in zip(model.lm.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    tokenizer = load_tokenizer(lm_dir)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.encode("what item is this ?") == [4, 5, 6, 7, 8]
    assert tokenizer.decode([9, 0, 10]) == "bag"


def test_word_tokenizer_round_trip(tmp_path):
    tokenizer = WordTokenizer.build(["what item is this?", "Ankle boot"])
    ids = tokenizer.encode("What item is this? ankle boot!")
    assert (
        ids[-1] == tokenizer.unk_id
        and tokenizer.decode(ids[:-1] + [tokenizer.eos_id, 5]) == "what item is this? ankle boot"
    )
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).words == tokenizer.words
    (tmp_path / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="neither"):
        load_tokenizer(tmp_path)


def test_lm_accepts_embeddings_instead_of_ids():
    lm = _tiny().lm.eval()
    ids = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(lm(None, inputs_embeds=lm.backbone.embedding(ids)), lm(ids), rtol=0, atol=0)


def test_vision_tower_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    from longseq.vision.vl_mamba.model import build_vision_tower

    tower_config = PRESETS["vl-mamba-test"].vision
    source = timm.create_model(tower_config.arch, num_classes=0, **tower_config.timm_kwargs())
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "tower.safetensors"))
    tower = build_vision_tower(tower_config, tmp_path / "tower.safetensors")
    assert len(tower.blocks) == 1  # depth 2, select_layer -2: the last block is pruned
    assert torch.equal(tower.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    with pytest.raises(CheckpointError, match="not found"):
        build_vision_tower(tower_config, tmp_path / "missing.safetensors")
    wider = dataclasses.replace(tower_config, width=48, heads=2)
    with pytest.raises(CheckpointError, match="does not fit vit_tiny_patch16_224"):
        build_vision_tower(wider, tmp_path / "tower.safetensors")
