"""``bytelm`` end to end on tiny presets: train (resume proven by the shared harness), generate (any bytes),
eval; every kind of bad input is one line, exit status 2 and nothing written."""

import functools
import json
import os
import subprocess
import sys

import pytest
import torch

from longseq import from_pretrained
from longseq.bytes.cli import main
from tests.resume_harness import check_resume


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a command writes by default lands here, not in the repository
    root = tmp_path / "corpus"
    (root / "pkg").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(8):
        text = (f"def f{i}(x):\n    return x * {i}\n" * 20).encode()
        (root / ("pkg" if i % 2 else ".") / f"m{i}.py").write_bytes(text)
    (root / "blob.bin").write_bytes(bytes(torch.randint(0, 256, (300,), generator=g).tolist()))
    (root / "empty.txt").write_bytes(b"")
    return root


def train_args(corpus, output, steps, *extra):
    return ["train", "--output", str(output), "--model", "mblm-tiny", "--data.path", str(corpus),
            "--data.batch_size", "2", "--trainer.max_steps", str(steps), "--trainer.progress_bar", "false",
            "--optimizer.warmup_steps", "1", *extra]  # fmt: skip


def test_train_generate_eval(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(corpus, run, 4, "--trainer.logger", "none")) == 0
    split = json.loads((run / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 10 and split["test"]
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    model = from_pretrained(run)  # the output directory is the model
    assert type(model).__name__ == "MBLM" and not model.training

    # generation from a non-UTF-8 prompt file, greedy, to a file: exactly the model's continuation
    prompt = tmp_path / "prompt.bin"
    prompt.write_bytes(b"\xff\xfe\x00def \x80")
    out = tmp_path / "gen.bin"
    args = ["generate", "--model", str(run), "--prompt_file", str(prompt), "--max_new_bytes", "9"]
    assert main([*args, "--greedy", "true", "--output", str(out)]) == 0
    ids = torch.tensor([list(prompt.read_bytes())])
    assert out.read_bytes() == bytes(model.generate(ids, 9)[0, ids.shape[1] :].tolist())

    data = torch.tensor(list((corpus / "m0.py").read_bytes()), dtype=torch.uint8)
    capsys.readouterr()
    assert main(["eval", "--model", str(run), "--path", str(corpus / "m0.py")]) == 0
    bpb = float(capsys.readouterr().out.split(",")[1].split()[0])
    assert bpb == pytest.approx(model.bits_per_byte(data), abs=1e-4)
    result = tmp_path / "eval.json"
    args = ["eval", "--model", str(run), "--path", str(corpus / "m0.py"), "--window", "9", "--stride", "5"]
    assert main([*args, "--output", str(result)]) == 0
    written = json.loads(result.read_text())
    assert written["bits_per_byte"] == pytest.approx(model.bits_per_byte(data, window=9, stride=5), abs=1e-6)
    assert (written["bytes"], written["window"], written["stride"]) == (data.numel(), 9, 5)


def test_train_resumes_exactly(corpus, tmp_path, monkeypatch):
    command = functools.partial(train_args, corpus)
    check_resume(main, command, lambda finished: ["--model", str(finished)], tmp_path, monkeypatch)


@pytest.mark.slow
def test_train_data_parallel_on_two_cpu_processes(corpus, tmp_path):
    """--trainer.strategy ddp --trainer.devices 2 on the CPU (gloo): Lightning runs the command again in a second
    process; both train, the first one alone creates the output directory and writes the model."""
    args = train_args(corpus, tmp_path / "run", 3, "--trainer.strategy", "ddp", "--trainer.devices", "2")
    args += ["--trainer.accelerator", "cpu", "--trainer.log_dir", str(tmp_path / "logs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "longseq.bytes.cli", *args]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr  # Lightning's line from the second process
    assert done.stdout.count("trained 3 steps") == 1
    assert from_pretrained(tmp_path / "run").context == 64


def test_print_config_echoes_the_trainer_flags(corpus, capsys):
    argv = ["train", "--output", "run", "--trainer.max_steps", "7", "--data.batch-size", "3", "--print_config"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "max_steps: 7" in printed and "batch_size: 3" in printed


def test_generate_to_stdout_with_a_text_prompt(capsysbinary):
    assert main(["generate", "--model", "mblm-tiny", "--prompt", "héllo", "--max_new_bytes", "5", "--seed", "3"]) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out) == 5
    assert b"random weights" in captured.err


@pytest.fixture
def inputs(corpus, tmp_path):
    """Files a careless user hands over: a prompt, an empty file, a binary file, another family's model, a
    checkpoint of another shape, a file where a directory belongs."""
    from longseq.core.lm import CausalLM

    (tmp_path / "p.txt").write_bytes(b"hello")
    (tmp_path / "existing.txt").write_bytes(b"keep me")
    (tmp_path / "noise.bin").write_bytes(bytes(torch.randint(0, 256, (512,)).tolist()))
    CausalLM.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    other = {"state_dict": {"model.head.weight": torch.zeros(3, 3)}, "loops": {}}
    (tmp_path / "ckpt").mkdir()
    torch.save(other, tmp_path / "ckpt" / "last.ckpt")
    return tmp_path


TRAIN = ["train", "--output", "run", "--data.path", "corpus", "--model", "mblm-tiny", "--trainer.max_steps", "2"]
GEN = ["generate", "--model", "mblm-tiny", "--max_new_bytes", "8"]
EVAL = ["eval", "--model", "mblm-tiny", "--path", "corpus"]
BAD = {
    # bytelm train: every field, every file, the output
    "no data": (["train", "--output", "run", "--trainer.max_steps", "2"], "--data.path"),
    "missing data": ([*TRAIN, "--data.path", "nowhere"], "no such file or directory"),
    "empty data": ([*TRAIN, "--data.path", "corpus/empty.txt"], "fewer than one window"),
    "zero steps": ([*TRAIN, "--trainer.max_steps", "0"], "max_steps"),
    "negative steps": ([*TRAIN, "--trainer.max_steps", "-5"], "max_steps"),
    "word steps": ([*TRAIN, "--trainer.max_steps", "ten"], "max_steps"),
    "zero batch": ([*TRAIN, "--data.batch_size", "0"], "batch_size"),
    "negative lr": ([*TRAIN, "--optimizer.lr", "-1"], "lr"),
    "zero lr": ([*TRAIN, "--optimizer.lr", "0"], "lr"),
    "nan lr": ([*TRAIN, "--optimizer.lr", "nan"], "optimizer.lr"),
    "zero window": ([*TRAIN, "--data.seq_len", "0"], "seq_len"),
    "huge window": ([*TRAIN, "--data.seq_len", "500"], "seq_len"),
    "fractions": ([*TRAIN, "--data.val_fraction", "1.5"], "fractions"),
    "zero devices": ([*TRAIN, "--trainer.devices", "0"], "devices"),
    "no gpu": ([*TRAIN, "--trainer.accelerator", "cuda"], "can not run on your system"),
    "resume no dir": ([*TRAIN, "--trainer.resume", "last"], "checkpoint_dir"),
    "resume noise": ([*TRAIN, "--trainer.resume", "noise.bin"], "noise.bin"),
    "resume other model": ([*TRAIN, "--trainer.checkpoint_dir", "ckpt", "--trainer.resume", "last"], "does not fit"),
    "output is data": ([*TRAIN, "--output", "corpus"], "would overwrite the input"),
    "output is a file": ([*TRAIN, "--output", "existing.txt"], "already exists"),
    "output under a file": ([*TRAIN, "--output", "existing.txt/run"], "cannot create"),
    "checkpoints in output": ([*TRAIN, "--trainer.checkpoint_dir", "run/ckpt"], "lies inside --output"),
    "other family": ([*TRAIN, "--model", "lm"], "not a ByteLM"),
    "missing model": ([*TRAIN, "--model", "nowhere"], "unknown model"),
    "binary config": (["train", "--config", "noise.bin"], "decode"),
    # bytelm generate
    "prompt is output": ([*GEN, "--prompt_file", "p.txt", "--output", "p.txt"], "would overwrite the input"),
    "zero bytes": ([*GEN, "--prompt", "a", "--max_new_bytes", "0"], "--max_new_bytes"),
    "negative bytes": ([*GEN, "--prompt", "a", "--max_new_bytes", "-3"], "--max_new_bytes"),
    "past the context": ([*GEN, "--prompt", "a", "--max_new_bytes", "1000000000"], "exceeds the model's context"),
    "prompt past context": ([*GEN, "--prompt_file", "corpus/m0.py"], "exceeds the model's context"),
    "zero temperature": ([*GEN, "--prompt", "a", "--temperature", "0"], "--temperature"),
    "nan temperature": ([*GEN, "--prompt", "a", "--temperature", "nan"], "temperature"),
    "zero top_p": ([*GEN, "--prompt", "a", "--top_p", "0"], "--top_p"),
    "negative top_k": ([*GEN, "--prompt", "a", "--top_k", "-1"], "--top_k"),
    "gen no gpu": ([*GEN, "--prompt", "a", "--device", "cuda"], "CUDA is not available"),
    "gen bad device": ([*GEN, "--prompt", "a", "--device", "tpu9"], "unknown device"),
    "empty prompt file": ([*GEN, "--prompt_file", "corpus/empty.txt"], "is empty"),
    "missing prompt file": ([*GEN, "--prompt_file", "nowhere"], "no such file"),
    "prompt file is a dir": ([*GEN, "--prompt_file", "corpus"], "not a file"),
    "two prompts": ([*GEN, "--prompt", "a", "--prompt_file", "p.txt"], "exactly one"),
    "output is a dir": ([*GEN, "--prompt", "a", "--output", "corpus"], "is a directory"),
    "gen output in no dir": ([*GEN, "--prompt", "a", "--output", "nodir/x.bin"], "does not exist"),
    "gen other family": (["generate", "--model", "lm", "--prompt", "a"], "not a ByteLM"),
    # bytelm eval
    "zero window eval": ([*EVAL, "--window", "0"], "--window"),
    "negative window": ([*EVAL, "--window", "-3"], "--window"),
    "window past context": ([*EVAL, "--window", "100000"], "--window must lie in"),
    "zero stride": ([*EVAL, "--stride", "0"], "--stride"),
    "stride past window": ([*EVAL, "--window", "8", "--stride", "9"], "--stride must lie in"),
    "zero eval batch": ([*EVAL, "--batch_size", "0"], "--batch_size"),
    "empty file": (["eval", "--model", "mblm-tiny", "--path", "corpus/empty.txt"], "is empty"),
    "missing file": (["eval", "--model", "mblm-tiny", "--path", "nowhere"], "no such file"),
    "eval output is input": (["eval", "--model", "mblm-tiny", "--path", "p.txt", "--output", "p.txt"],
                             "would overwrite the input"),
    "eval no gpu": ([*EVAL, "--device", "cuda"], "CUDA is not available"),
    "eval other family": (["eval", "--model", "lm", "--path", "corpus"], "not a ByteLM"),
}  # fmt: skip


def _tree(root):
    return {(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("argv, message", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, inputs, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    before = _tree(inputs)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bytelm: error:") and message in err, err
    assert _tree(inputs) == before
