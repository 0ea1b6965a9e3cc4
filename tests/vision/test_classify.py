"""Offline image sets and `vision train-classifier` end to end (scikit-learn digits), bad inputs included."""

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


def test_train_classifier_on_digits(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["train-classifier", "--out", str(out), "--model", "localvim_test", "--data.dataset", "digits",
            "--data.image_size", "16", "--data.val_size", "64", "--data.batch_size", "16",
            "--trainer.max_steps", "3", "--trainer.logger", "none", "--trainer.log_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and 0.0 <= metrics["test_acc"] <= 1.0
    model = LocalVim.from_pretrained(out)
    assert model.config.in_chans == 1 and model.config.img_size == 16 and model.num_classes == 10


def test_train_classifier_bad_inputs(tmp_path, capsys):
    def bad(extra, message):
        code = main(["train-classifier", "--out", str(tmp_path / "m"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err

    bad(["--data.data_dir", str(tmp_path / "none")], "Fashion-MNIST not found")
    bad([], "Fashion-MNIST is not bundled")  # the default data set needs its files
    bad(["--model", "resnet50", "--data.dataset", "digits", "--data.val_size", "64"], "neither a LocalMamba preset")
    bad(["--out", str(tmp_path / "no" / "m"), "--data.dataset", "digits"], "does not exist")
    assert not (tmp_path / "m").exists()
