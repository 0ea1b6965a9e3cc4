"""``bytelm`` end to end on tiny presets: train (and resume exactly), generate (any bytes), eval; bad input."""

import json

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import longseq.bytes.tasks.lm as lm_task
from longseq.bytes.cli import main
from longseq.core.registry import from_pretrained


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "pkg").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(8):
        text = (f"def f{i}(x):\n    return x * {i}\n" * 20).encode()
        (root / ("pkg" if i % 2 else ".") / f"m{i}.py").write_bytes(text)
    (root / "blob.bin").write_bytes(bytes(torch.randint(0, 256, (300,), generator=g).tolist()))
    (root / "empty.txt").write_bytes(b"")
    return root


def train_args(corpus, out, steps, *extra):
    return ["train", "--data", str(corpus), "--out", str(out), "--model", "mblm-tiny", "--max_steps", str(steps),
            "--batch_size", "2", "--warmup_steps", "1", "--checkpoint_every", "2", *extra]  # fmt: skip


class Crash(L.Callback):
    """Kill training once two steps are done (and checkpointed)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise RuntimeError("simulated crash")


def test_train_resume_generate_eval(corpus, tmp_path, capsys, monkeypatch):
    assert main(train_args(corpus, tmp_path / "a", 4)) == 0
    run = tmp_path / "a"
    split = json.loads((run / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 10 and split["test"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "model" / "model.safetensors").is_file()
    assert json.loads((run / "summary.json").read_text())["steps"] == 4

    # a run killed after 2 of 4 steps, then resumed: the same weights as the uninterrupted run
    real_build = lm_task.build_trainer
    monkeypatch.setattr(lm_task, "build_trainer", lambda config: real_build(config, callbacks=[Crash()]))
    assert main(train_args(corpus, tmp_path / "b", 4)) == 1
    assert not (tmp_path / "b" / "model").exists()
    monkeypatch.setattr(lm_task, "build_trainer", real_build)
    assert main([*train_args(corpus, tmp_path / "b", 4), "--resume", "true"]) == 0
    full, resumed = (
        load_file(run / "model" / "model.safetensors"),
        load_file(tmp_path / "b" / "model" / "model.safetensors"),
    )
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], msg=key)

    # generation from a non-UTF-8 prompt file, greedy, to a file: exactly the model's continuation
    prompt = tmp_path / "prompt.bin"
    prompt.write_bytes(b"\xff\xfe\x00def \x80")
    out = tmp_path / "gen.bin"
    args = ["generate", "--model", str(run / "model"), "--prompt_file", str(prompt), "--max_new_bytes", "9"]
    assert main([*args, "--greedy", "true", "--output", str(out)]) == 0
    model = from_pretrained(run / "model").eval()
    ids = torch.tensor([list(prompt.read_bytes())])
    assert out.read_bytes() == bytes(model.generate(ids, 9)[0, ids.shape[1] :].tolist())

    capsys.readouterr()
    assert main(["eval", "--model", str(run / "model"), "--path", str(corpus / "m0.py")]) == 0
    bpb = float(capsys.readouterr().out.split(",")[1].split()[0])
    data = torch.tensor(list((corpus / "m0.py").read_bytes()), dtype=torch.uint8)
    with torch.no_grad():
        assert bpb == pytest.approx(model.bits_per_byte(data), abs=1e-4)
    assert (
        main(["eval", "--model", str(run / "model"), "--path", str(corpus / "m0.py"), "--window", "9", "--stride", "5"])
        == 0
    )
    bpb = float(capsys.readouterr().out.split(",")[1].split()[0])
    with torch.no_grad():
        assert bpb == pytest.approx(model.bits_per_byte(data, window=9, stride=5), abs=1e-4)


def test_generate_to_stdout_with_a_text_prompt(capsysbinary):
    assert main(["generate", "--model", "mblm-tiny", "--prompt", "héllo", "--max_new_bytes", "5", "--seed", "3"]) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out) == 5
    assert b"random weights" in captured.err


def bad(argv, capsys, match, left=None):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bytelm: error:") and match in err, err
    assert left is None or not left.exists()


def test_bad_input(corpus, tmp_path, capsys):
    out = tmp_path / "gen.bin"
    gen = ["generate", "--model", "mblm-tiny", "--max_new_bytes", "8", "--output", str(out)]
    bad([*gen, "--prompt_file", str(corpus / "m0.py")], capsys, "exceeds the model's context", left=out)
    bad([*gen, "--prompt_file", str(corpus / "empty.txt")], capsys, "is empty", left=out)
    bad([*gen, "--prompt_file", str(tmp_path / "missing")], capsys, "no such file", left=out)
    bad([*gen, "--prompt", "a", "--prompt_file", str(corpus / "m0.py")], capsys, "exactly one", left=out)
    bad(["eval", "--model", "mblm-tiny", "--path", str(corpus / "empty.txt")], capsys, "is empty")
    bad(["eval", "--model", "mblm-tiny", "--path", str(tmp_path / "nowhere")], capsys, "no such file")
    bad(["eval", "--model", "mblm-tiny", "--path", str(corpus), "--stride", "0"], capsys, "--stride must lie in")
    bad(["eval", "--model", "mblm-tiny", "--path", str(corpus), "--window", "0"], capsys, "--window must lie in")
    bad(["eval", "--model", str(tmp_path / "nowhere"), "--path", str(corpus)], capsys, "neither a preset")

    from longseq.core.lm import CausalLM

    CausalLM.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    bad(["eval", "--model", str(tmp_path / "lm"), "--path", str(corpus)], capsys, "expected one of: mblm, megabyte")
    bad(train_args(tmp_path / "nowhere", tmp_path / "run", 2), capsys, "no such file or directory")
    bad([*train_args(corpus, tmp_path / "run", 2), "--seq_len", "500"], capsys, "seq_len")
