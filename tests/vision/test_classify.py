"""Offline image sets and `vision train-classifier` end to end (scikit-learn digits): exact resume, bad inputs."""

import dataclasses
import gzip
import json
import struct

import numpy as np
import pytest
import torch

from longseq.core.io import InputError
from longseq.vision.cli import main
from longseq.vision.images import ImageClassificationDataset, load_digits, load_fashion_mnist, read_idx
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.presets import PRESETS
from tests.resume_harness import check_resume


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(root, n=6):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_idx_reader_and_fashion_mnist_layout(tmp_path):
    _fake_fashion_mnist(tmp_path)
    images, labels = load_fashion_mnist("test", tmp_path)
    assert images.shape == (6, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_idx_reader_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such IDX file"):
        read_idx(tmp_path / "missing.gz")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(InputError, match="not an unsigned-byte IDX file"):
        read_idx(bad)
    truncated = tmp_path / "short.gz"
    with gzip.open(truncated, "wb") as f:
        f.write(struct.pack(">BBBB3I", 0, 0, 8, 3, 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(InputError, match="truncated"):
        read_idx(truncated)
    with pytest.raises(InputError, match="not found in .*nowhere: download its four IDX files .* with --data.data_dir"):
        load_fashion_mnist("train", tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"not bundled: .*t10k-labels.*/fashion-mnist .* with --data_dir"):
        load_fashion_mnist("test", None, flag="--data_dir")


def test_digits_dataset_normalises_and_resizes():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.max() == 255 and set(labels.tolist()) == set(range(10))
    data = ImageClassificationDataset(images[:10], labels[:10], mean=0.5, std=0.25, size=16)
    x, y = data[3]
    assert x.shape == (1, 16, 16) and y == labels[3]


DIGITS = ["--model", "localvim_test", "--data.dataset", "digits", "--data.image_size", "16", "--data.val_size", "32",
          "--data.test_size", "32", "--data.batch_size", "8"]  # fmt: skip


def test_train_classifier_on_digits(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["train-classifier", "--output", str(out), *DIGITS, "--trainer.max_steps", "3", "--trainer.logger", "none",
            "--trainer.log_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and 0.0 <= metrics["test_acc"] <= 1.0
    model = LocalVim.from_pretrained(out)
    assert model.config.in_chans == 1 and model.config.img_size == 16 and model.num_classes == 10


def test_train_classifier_resumes_exactly(tmp_path, monkeypatch):
    def command(output, steps):
        return ["train-classifier", "--output", output, *DIGITS, "--trainer.max_steps", steps,
                "--trainer.progress_bar", "false"]  # fmt: skip

    check_resume(main, command, lambda output: ["--model", output], tmp_path, monkeypatch)


def test_train_classifier_prints_its_config(capsys):
    assert main(["train-classifier", "--trainer.max_steps", "7", "--print_config"]) == 0
    assert "  max_steps: 7" in capsys.readouterr().out.splitlines()  # under trainer:


def test_train_classifier_bad_inputs(tmp_path, capsys):
    def bad(extra, message):
        code = main(["train-classifier", "--output", str(tmp_path / "m"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err

    bad(["--data.data_dir", str(tmp_path / "none")], "Fashion-MNIST not found")
    bad([], "Fashion-MNIST is not bundled")  # the default data set needs its files
    bad(["--model", "resnet50", "--data.dataset", "digits", "--data.val_size", "64"], "neither a LocalMamba preset")
    assert not (tmp_path / "m").exists()


def _one_class_fashion_mnist(root):
    _fake_fashion_mnist(root, n=40)
    _write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(40))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data.batch_size", "0"], "batch_size must be >= 1, got 0"),
        (["--data.val_size", "0"], "val_size must be >= 1, got 0"),
        (["--data.val_size", "1765"], "--data.val_size 1765 leaves none of the 1765 training images"),
        (["--data.image_size", "-1"], "image_size must lie in [0, 1024]"),
        (["--data.image_size", "100000"], "image_size must lie in [0, 1024]"),
        (["--data.train_limit", "4"], "4 training images are fewer than one batch of 8"),
        (["--trainer.max_steps", "0"], "max_steps must be positive"),
        (["--optimizer.lr", "-1"], "lr must be positive"),
        (["--label_smoothing", "1.5"], "--label_smoothing must lie in [0, 1)"),
        (["--label_smoothing", "nan"], "label_smoothing"),
        (["--model", "{dropout}"], "drop_path_rate must lie in [0, 1], got 2.0"),
        (["--model", "{garbage}"], "is not a JSON config"),
        (["--model", "{other_family}"], "holds a CausalLM, not a LocalVim or LocalVMamba"),
        (["--model", "{misfit}"], "does not fit the data: num_classes 3 (the data: 10)"),
        (["--model", "{output}"], "would overwrite the input"),
        (["--output", "{existing_file}"], "already exists"),
        (["--trainer.checkpoint_dir", "{output}/ckpt"], "--trainer.checkpoint_dir {output}/ckpt lies inside --output"),
        (["--data.dataset", "fashion-mnist", "--data.data_dir", "{one_class}"], "the training labels hold one class"),
    ],
)
def test_train_classifier_refuses_bad_input_before_work(tmp_path, capsys, extra, message):
    """One line, exit 2, nothing written: the output directory never appears."""
    import longseq

    paths = {
        "output": tmp_path / "out",
        "dropout": tmp_path / "dropout.json",
        "garbage": tmp_path / "garbage.json",
        "other_family": tmp_path / "lm",
        "misfit": tmp_path / "misfit",
        "existing_file": tmp_path / "file",
        "one_class": tmp_path / "fmnist",
    }
    config = json.loads(json.dumps({"model_type": "local_vim", **dataclasses.asdict(PRESETS["localvim_test"])}))
    paths["dropout"].write_text(json.dumps({**config, "drop_path_rate": 2.0}))
    paths["garbage"].write_bytes(b"\x00\xff binary")
    paths["existing_file"].write_text("keep me")
    if "{other_family}" in extra:
        longseq.from_pretrained("mamba-tiny").save_pretrained(paths["other_family"])
    if "{misfit}" in extra:
        longseq.from_pretrained("localvim_test", in_chans=1, img_size=16, num_classes=3).save_pretrained(
            paths["misfit"]
        )
    if "{output}" in extra:
        longseq.from_pretrained("localvim_test", in_chans=1, img_size=16).save_pretrained(paths["output"])
    if "{one_class}" in extra:
        paths["one_class"].mkdir()
        _one_class_fashion_mnist(paths["one_class"])
    before = sorted(tmp_path.rglob("*"))
    argv = ["train-classifier", "--output", paths["output"], *DIGITS, "--trainer.logger", "none", *extra]
    code = main([str(arg).format(**paths) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message.format(**paths) in err, err
    assert sorted(tmp_path.rglob("*")) == before
    assert paths["existing_file"].read_text() == "keep me"
