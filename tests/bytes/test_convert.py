"""Checkpoints of mblm 0.4.2 and MEGABYTE-pytorch 0.3.6 read as our MBLM: the packages' own outputs on the
fixtures (tests/fixtures/*/README.md), the ways to give a checkpoint, bytelm on converted models, bad input."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longseq import from_pretrained
from longseq.bytes import MBLM
from longseq.bytes.cli import main
from longseq.core.checkpoint import CheckpointError

FIXTURES = Path(__file__).parents[1] / "fixtures"
PACKAGES = {"mblm_a": "model.pth", "megabyte_a": "model.pt"}
ATOL = 1e-5  # float32; the packages' own float32 noise is below 1e-6 (fixture READMEs)


def expected(name: str) -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / name / "expected.safetensors")


@pytest.mark.parametrize("name", PACKAGES)
def test_fixture_logits_and_losses_match_the_package(name):
    model = from_pretrained(FIXTURES / name)
    assert isinstance(model, MBLM) and not model.training
    e = expected(name)
    with torch.no_grad():
        for length in ("full", "short"):  # 64 bytes (the whole context) and 23 (padded inside, pad ids in row 1)
            ids = e[f"input_ids_{length}"]
            torch.testing.assert_close(model(ids), e[f"logits_{length}"], rtol=0, atol=ATOL)
            torch.testing.assert_close(model.loss(ids), e[f"loss_{length}"], rtol=0, atol=ATOL)
        # byte 0's prediction (the package's loss uses it) and the empty prompt's (its generate uses that)
        torch.testing.assert_close(model.byte_logits(e["input_ids_full"])[:, 0], e["start_logits"], rtol=0, atol=ATOL)
        empty = torch.zeros(2, 0, dtype=torch.long)
        first = model.decoder.prefill(empty, model.decoder.init_state())
        torch.testing.assert_close(first, e["logits_empty"][:, 0], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", PACKAGES)
def test_cached_greedy_generation_equals_the_package(name):
    model = from_pretrained(FIXTURES / name)
    e = expected(name)
    prompt, output = e["greedy_prompt"], e["greedy_output"]  # the package recomputes every step
    assert torch.equal(model.generate(prompt, output.shape[1] - prompt.shape[1]), output)


@pytest.mark.parametrize("name", PACKAGES)
def test_a_checkpoint_file_with_its_config(name, tmp_path):
    directory = FIXTURES / name
    checkpoint = directory / PACKAGES[name]
    ids = expected(name)["input_ids_short"]
    reference = from_pretrained(directory)(ids)
    model = from_pretrained(checkpoint, config=directory / "config.json")
    torch.testing.assert_close(model(ids), reference, rtol=0, atol=0)
    config = json.loads((directory / "config.json").read_text())
    arguments = config["config" if name == "mblm_a" else "kwargs"]
    torch.testing.assert_close(from_pretrained(checkpoint, config=arguments)(ids), reference, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="without its constructor arguments"):
        from_pretrained(checkpoint)

    # safetensors beside the bare constructor arguments
    state = torch.load(checkpoint, weights_only=True)
    save_file(state.get("MODEL", state), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(arguments))
    torch.testing.assert_close(from_pretrained(tmp_path)(ids), reference, rtol=0, atol=0)


def test_bytelm_generate_and_eval_on_converted_models(tmp_path, capsys):
    e = expected("mblm_a")
    prompt, output = e["greedy_prompt"][0], e["greedy_output"][0]
    out = tmp_path / "gen.bin"
    args = ["generate", "--model", str(FIXTURES / "mblm_a"), "--greedy", "true", "--output", str(out)]
    prompt_text = bytes(prompt.tolist()).decode()
    assert main([*args, "--prompt", prompt_text, "--max_new_bytes", str(len(output) - len(prompt))]) == 0
    assert out.read_bytes() == bytes(output[len(prompt) :].tolist())

    # Two context windows, each scored from nothing, are the package's loss over the two rows (no byte is mblm's
    # pad id 256): bits per byte = loss / ln 2.
    data = tmp_path / "rows.bin"
    data.write_bytes(bytes(e["input_ids_full"].flatten().tolist()))
    capsys.readouterr()
    assert main(["eval", "--model", str(FIXTURES / "mblm_a"), "--path", str(data)]) == 0
    bpb = float(capsys.readouterr().out.split(",")[1].split()[0])
    assert bpb == pytest.approx(float(e["loss_full"]) / torch.log(torch.tensor(2.0)).item(), abs=1e-4)


def _broken_copy(tmp_path, name, edit) -> Path:
    directory = tmp_path / name
    shutil.copytree(FIXTURES / name, directory)
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _set(path, value):
    def edit(config):
        *parents, last = path
        for key in parents:
            config = config[key]
        config[last] = value

    return edit


BAD = {
    "mblm other version": ("mblm_a", _set(["package_version"], "0.3.0"), "written by mblm 0.3.0; .* mblm 0.4.2"),
    "megabyte other version": ("megabyte_a", _set(["package_version"], "0.2.2"), "MEGABYTE-pytorch 0.3.6"),
    "widths that do not fit": ("mblm_a", _set(["config", "hidden_dims"], [32, 16]), "does not fit MBLM"),
    # same tensor shapes (4 x 8 = 8 x 4), but the stored rotary frequencies give the head width away
    "head width": ("megabyte_a", lambda c: c["kwargs"].update(dim_head=4, heads=8), "not those of head width 4"),
    "missing argument": ("mblm_a", lambda c: c["config"].pop("seq_lens"), "lack 'seq_lens'"),
    "encoder block": ("mblm_a", _set(["config", "block", 0, "block_type"], "transformerEncoder"), "not a decoder"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoints_are_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    name, edit, message = BAD[case]
    directory = _broken_copy(tmp_path, name, edit)
    out = tmp_path / "gen.bin"
    capsys.readouterr()
    argv = ["generate", "--model", str(directory), "--prompt", "ab", "--max_new_bytes", "2", "--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not out.exists()


def test_another_mblm_layout_and_a_bare_file_are_one_line(tmp_path, capsys):
    state = torch.load(FIXTURES / "mblm_a" / "model.pth", weights_only=True)["MODEL"]
    # the embedding tables under the names of MEGABYTE's Sequential (token_embs_rev.N.weight), not mblm 0.4.2's
    old = {key.replace(".embedding.weight", ".weight"): tensor for key, tensor in state.items()}
    torch.save({"MODEL": old, "LOSS": 0.0}, tmp_path / "old.pth")
    config = FIXTURES / "mblm_a" / "config.json"
    with pytest.raises(CheckpointError, match="another mblm layout .* mblm 0.4.2"):
        from_pretrained(tmp_path / "old.pth", config=config)
    out = tmp_path / "gen.bin"
    capsys.readouterr()
    argv = ["generate", "--model", str(FIXTURES / "mblm_a" / "model.pth"), "--prompt", "a", "--output", str(out)]
    assert main(argv) == 2  # the file alone: its constructor arguments are missing
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "constructor arguments" in err and not out.exists()
