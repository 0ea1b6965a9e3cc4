"""Files as byte data: the training data's config, listing, the split by file (deterministic, disjoint, stable),
reading."""

import pytest
import torch

from longseq.bytes.data.files import BytesDataConfig, list_files, read_bytes, read_file, split_files
from longseq.core.io import InputError


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sub").mkdir()
    for i in range(10):
        (tmp_path / ("sub" if i % 2 else ".") / f"f{i}.txt").write_bytes(bytes([i]) * (i + 1))
    (tmp_path / "empty").write_bytes(b"")
    return tmp_path


def test_list_and_split_by_file(tree):
    files = list_files(tree)
    assert len(files) == 11 and files == sorted(files)
    split = split_files(files, tree, val_fraction=0.2, test_fraction=0.2, seed=3)
    names = [set(split[k]) for k in ("train", "val", "test")]
    assert sum(len(n) for n in names) == 11 and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert len(split["val"]) == 2 and len(split["test"]) == 2
    assert split == split_files(files, tree, val_fraction=0.2, test_fraction=0.2, seed=3)
    # adding a file moves no other file between splits
    (tree / "new.txt").write_bytes(b"x")
    again = split_files(list_files(tree), tree, val_fraction=0.2, test_fraction=0.2, seed=3)
    moved = [f for k in split for f in split[k] if f not in again[k]]
    assert len(moved) <= 1


def test_read_bytes_concatenates_and_skips_empty_files(tree):
    files = [tree / "f0.txt", tree / "empty", tree / "sub" / "f1.txt"]
    assert torch.equal(read_bytes(files), torch.tensor([0, 1, 1], dtype=torch.uint8))
    assert read_bytes([tree / "empty"]).numel() == 0


def test_bad_paths(tree):
    with pytest.raises(InputError, match="no such file or directory"):
        list_files(tree / "missing")
    (tree / "void").mkdir()
    with pytest.raises(InputError, match="no files"):
        list_files(tree / "void")
    with pytest.raises(InputError, match="empty"):
        read_file(tree / "empty")
    with pytest.raises(InputError, match="no such file"):
        read_file(tree / "missing")
    with pytest.raises(InputError, match="fractions"):
        split_files(list_files(tree), tree, val_fraction=0.6, test_fraction=0.5)


def test_unreadable_file(tree):
    # a path that cannot be read as a file (root may read any file, so permissions cannot stand in for this)
    with pytest.raises(InputError, match="cannot read"):
        read_bytes([tree / "sub"])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"seq_len": 0}, "seq_len"),
        ({"seq_len": -4}, "seq_len"),
        ({"val_fraction": float("nan")}, "fractions"),
        ({"test_fraction": -0.1}, "fractions"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "fractions"),
        ({"split_seed": -1}, "split_seed"),
    ],
)
def test_data_config_checks_every_field(fields, message):
    with pytest.raises(ValueError, match=message):
        BytesDataConfig(**fields)
    assert BytesDataConfig().path is None  # the default exists; bytelm train asks for --data.path
