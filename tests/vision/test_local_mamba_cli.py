"""`vision convert / extract-directions` end to end on tiny models, bad inputs included."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from longseq.vision.cli import main
from longseq.vision.local_mamba.cli import load_model_config
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.presets import preset
from longseq.vision.local_mamba.scans import ALL_DIRECTIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run_ok(argv, capsys):
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err


def run_bad(argv, capsys, message):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("vision: error:") and message in err, err


def _fixture_config(tmp_path) -> Path:
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
    run_ok(["convert", "--checkpoint", FIXTURES / "localvim_a" / "checkpoint.pth", "--model", _fixture_config(tmp_path),
            "--out", out], capsys)  # fmt: skip
    model = LocalVim.from_pretrained(out).eval()
    expected = load_file(FIXTURES / "localvim_a" / "expected.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(expected["images"]), expected["logits"], rtol=0, atol=1e-5)


def test_convert_bad_inputs(tmp_path, capsys):
    out = tmp_path / "converted"
    file = FIXTURES / "localvim_a" / "checkpoint.pth"
    run_bad(["convert", "--checkpoint", file, "--model", "localvim_test", "--out", out], capsys, "class token")
    run_bad(
        ["convert", "--checkpoint", file, "--model", "localvim_giant", "--out", out], capsys, "neither a LocalMamba"
    )
    run_bad(["convert", "--checkpoint", tmp_path / "none.ckpt", "--model", "localvim_test", "--out", out], capsys,
            "not found")  # fmt: skip
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    run_bad(["convert", "--checkpoint", garbage, "--model", "localvim_test", "--out", out], capsys, "cannot read")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"model_type": "local_vim", "depth": 2, "directions": [["h"]]}')
    run_bad(["convert", "--checkpoint", file, "--model", bad_json, "--out", out], capsys, "directions has 1 layers")
    assert not out.exists()


def _supernet(tmp_path) -> tuple[Path, list[list[str]]]:
    model = LocalVim.from_config(preset("localvim_test_search"))
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
    run_ok(["extract-directions", "--checkpoint", supernet, "--out", out], capsys)
    config = load_model_config(str(out))
    assert config.directions == expected and config.embed_dim == 32
    model = LocalVim.from_config(config)
    assert model.layers[1].mixer.directions == tuple(expected[1])
    run_ok(["extract-directions", "--checkpoint", supernet, "--out", out, "--topk", "2", "--model", "localvim_test"],
           capsys)  # fmt: skip
    assert [len(d) for d in load_model_config(str(out)).directions] == [2, 2]


def test_extract_directions_from_an_official_file(tmp_path, capsys):
    supernet, expected = _supernet(tmp_path)
    official = tmp_path / "supernet.ckpt"
    torch.save({"model": load_file(supernet / "model.safetensors")}, official)
    out = tmp_path / "searched.json"
    run_bad(["extract-directions", "--checkpoint", official, "--out", out], capsys, "pass --model")
    run_ok(["extract-directions", "--checkpoint", official, "--out", out, "--model", "localvim_test"], capsys)
    assert load_model_config(str(out)).directions == expected


def test_extract_directions_bad_inputs(tmp_path, capsys):
    LocalVim.from_config(preset("localvim_test")).save_pretrained(tmp_path / "final")
    out = tmp_path / "searched.json"
    run_bad(["extract-directions", "--checkpoint", tmp_path / "final", "--out", out], capsys, "not a LocalMamba search")
    run_bad(["extract-directions", "--checkpoint", tmp_path / "nothing", "--out", out], capsys, "no such checkpoint")
    supernet, _ = _supernet(tmp_path)
    run_bad(["extract-directions", "--checkpoint", supernet, "--out", out, "--topk", "9"], capsys, "topk must be")
    run_bad(["extract-directions", "--checkpoint", supernet, "--out", out, "--model", "localvmamba_test"], capsys,
            "is a local_vim supernet")  # fmt: skip
    run_bad(["extract-directions", "--checkpoint", supernet, "--out", out, "--model", "localvim_tiny"], capsys,
            "directions has 2 layers; depth is 20")  # fmt: skip
    run_bad(["extract-directions", "--checkpoint", supernet, "--out", tmp_path / "no" / "x.json"], capsys,
            "does not exist")  # fmt: skip
    assert not out.exists()
