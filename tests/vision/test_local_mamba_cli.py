"""`vision convert / extract-directions` end to end on tiny models, bad inputs included."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import longseq
from longseq.vision.cli import main
from longseq.vision.local_mamba.convert import named_architecture
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.scans import ALL_DIRECTIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOCALVIM_A = FIXTURES / "localvim_a" / "checkpoint.pth"


def run_ok(argv, capsys):
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err


def run_bad(argv, capsys, message):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("vision: error:") and message in err, err


def _fixture_config(tmp_path) -> Path:
    """The architecture of the localvim_a fixture as a JSON config (what extract-directions writes)."""
    kwargs = json.loads((FIXTURES / "localvim_a" / "config.json").read_text())["kwargs"]
    config = {
        "model_type": "local_vim",
        "img_size": 64,
        "embed_dim": 64,
        "depth": 4,
        "num_classes": 10,
        "directions": kwargs["directions"],
        "cls_token": "middle",
        "rope": False,
    }
    path = tmp_path / "localvim_a.json"
    path.write_text(json.dumps(config))
    return path


def test_convert_official_checkpoint(tmp_path, capsys):
    out = tmp_path / "converted"
    run_ok(["convert", "--checkpoint", LOCALVIM_A, "--model", _fixture_config(tmp_path), "--output", out], capsys)
    model = LocalVim.from_pretrained(out)
    assert not model.training
    expected = load_file(FIXTURES / "localvim_a" / "expected.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(expected["images"]), expected["logits"], rtol=0, atol=1e-5)
    # a new head and input size for fine-tuning: the head is fresh, the position table resized
    run_ok(["convert", "--checkpoint", LOCALVIM_A, "--model", _fixture_config(tmp_path), "--output", tmp_path / "five",
            "--num_classes", "5", "--img_size", "96"], capsys)  # fmt: skip
    assert LocalVim.from_pretrained(tmp_path / "five").pos_embed.shape == (1, 37, 64)


def test_convert_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "converted"
    arch = _fixture_config(tmp_path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"model_type": "local_vim", "depth": 2, "directions": [["h"]]}')
    cases = [
        (["--model", "localvim_test"], "shape mismatch"),
        (["--model", "localvim_giant"], "neither a LocalMamba preset"),
        (["--model", "localvmamba_test"], "holds a LocalVim; the architecture localvmamba_test is a LocalVMambaConfig"),
        (["--model", bad_json], "directions has 1 layers"),
        (["--model", arch, "--checkpoint", tmp_path / "none.ckpt"], "no such checkpoint file"),
        (["--model", arch, "--checkpoint", garbage], "cannot read"),
        (["--model", arch, "--num_classes", "-1"], "--num_classes and --img_size must be >= 0"),
        (["--model", arch, "--num_classes", "abc"], "num_classes"),
        (["--model", arch, "--num_classes", "1000000000"], "num_classes must lie in [0, 1048576]"),
        (["--model", arch, "--img_size", "100000000"], "img_size 100000000 makes over 1048576 patches"),
        (["--model", arch, "--output", garbage / "x"], "is not a writable directory"),
    ]
    for extra, message in cases:
        run_bad(["convert", "--checkpoint", LOCALVIM_A, "--output", out, *extra], capsys, message)
    assert not out.exists()


def test_convert_never_overwrites_its_inputs(tmp_path, capsys):
    """The issue's case: converting our own checkpoint into its own directory."""
    model = longseq.from_pretrained("localvim_test")
    model.save_pretrained(tmp_path / "sup")
    before = {p.name: p.read_bytes() for p in (tmp_path / "sup").iterdir()}
    ours = [
        "convert",
        "--checkpoint",
        tmp_path / "sup" / "model.safetensors",
        "--model",
        tmp_path / "sup" / "config.json",
    ]
    run_bad([*ours, "--output", tmp_path / "sup"], capsys, "would overwrite the input")
    (tmp_path / "file").write_text("keep me")
    run_bad([*ours, "--output", tmp_path / "file"], capsys, "already exists")
    assert {p.name: p.read_bytes() for p in (tmp_path / "sup").iterdir()} == before
    assert (tmp_path / "file").read_text() == "keep me"
    # into a new directory, our own safetensors converts like a release file
    run_ok([*ours, "--output", tmp_path / "copy"], capsys)
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == before["model.safetensors"]


def _supernet(tmp_path) -> tuple[Path, list[list[str]]]:
    model = longseq.from_pretrained("localvim_test_search")
    expected = []
    with torch.no_grad():
        for layer in model.layers:
            logits = torch.randn(8)
            layer.mixer.multi_scan.weights.copy_(logits.view(8, 1, 1, 1))
            expected.append([ALL_DIRECTIONS[i] for i in sorted(logits.topk(4).indices.tolist())])
    model.save_pretrained(tmp_path / "supernet")
    return tmp_path / "supernet", expected


def test_extract_directions_from_our_supernet(tmp_path, capsys):
    supernet, expected = _supernet(tmp_path)
    out = tmp_path / "searched.json"
    run_ok(["extract-directions", "--checkpoint", supernet, "--output", out], capsys)
    config = named_architecture(out)
    assert config.directions == expected and config.embed_dim == 32
    model = LocalVim.from_config(config)
    assert model.layers[1].mixer.directions == tuple(expected[1])
    run_ok(["extract-directions", "--checkpoint", supernet, "--output", out, "--topk", "2", "--model",
            "localvim_test"], capsys)  # fmt: skip
    assert [len(d) for d in named_architecture(out).directions] == [2, 2]


def test_extract_directions_from_an_official_file(tmp_path, capsys):
    supernet, expected = _supernet(tmp_path)
    official = tmp_path / "supernet.ckpt"
    torch.save({"model": load_file(supernet / "model.safetensors")}, official)
    out = tmp_path / "searched.json"
    run_bad(["extract-directions", "--checkpoint", official, "--output", out], capsys, "pass --model")
    run_ok(["extract-directions", "--checkpoint", official, "--output", out, "--model", "localvim_test"], capsys)
    assert named_architecture(out).directions == expected
    # the official file as a supernet, through the loader
    loaded = longseq.from_pretrained(official, architecture="localvim_test_search")
    assert not loaded.training and loaded.layers[0].mixer.multi_scan.search


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{final}"], "not a LocalMamba search supernet"),
        (["--checkpoint", "{lm}"], "holds a CausalLM, not a LocalMamba search supernet"),
        (["--checkpoint", "{nothing}"], "no such checkpoint"),
        (["--checkpoint", "{supernet}", "--topk", "9"], "--topk must lie in 1..8"),
        (["--checkpoint", "{supernet}", "--topk", "0"], "--topk must lie in 1..8"),
        (["--checkpoint", "{supernet}", "--model", "localvmamba_test"], "is a local_vim supernet"),
        (["--checkpoint", "{supernet}", "--model", "localvim_tiny"], "directions has 2 layers; depth is 20"),
        (["--checkpoint", "{supernet}", "--output", "{nothing}/x.json"], "does not exist"),
        (["--checkpoint", "{supernet}", "--output", "{final}"], "is a directory"),
        # the case: the output inside the supernet's directory, over its config
        (["--checkpoint", "{supernet}", "--output", "{supernet}/config.json"], "would overwrite the input"),
        (["--checkpoint", "{supernet}", "--output", "{supernet}/model.safetensors"], "would overwrite the input"),
    ],
)
def test_extract_directions_refuses_bad_input(tmp_path, capsys, argv, message):
    supernet, _ = _supernet(tmp_path)
    longseq.from_pretrained("localvim_test").save_pretrained(tmp_path / "final")
    longseq.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    paths = {"supernet": supernet, "final": tmp_path / "final", "lm": tmp_path / "lm", "nothing": tmp_path / "nothing"}
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "searched.json"
    run_bad(["extract-directions", "--output", out, *[str(a).format(**paths) for a in argv]], capsys, message)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
