"""core.io: outputs never destroy inputs, output directories appear only for a command that succeeds, devices."""

import pytest

from longseq.core.io import InputError, atomic_output, check_not_overwriting, new_directory, resolve_device


def test_an_output_equal_to_an_input_is_refused(tmp_path):
    data = tmp_path / "in.fa"
    data.write_text(">x\nACGT\n")
    with pytest.raises(InputError, match="would overwrite the input"):
        check_not_overwriting(data, None, tmp_path / "other.fa", data)
    with pytest.raises(InputError, match="would overwrite the input"):
        check_not_overwriting(tmp_path / "." / "in.fa", data)  # the same file, spelled differently
    with pytest.raises(InputError, match="would overwrite the input"):
        check_not_overwriting(tmp_path, data)  # a directory output holding the input
    check_not_overwriting(tmp_path / "out.npz", data)
    check_not_overwriting(tmp_path / "hyenadna-tiny-1k", "hyenadna-tiny-1k")  # a preset name is no file to destroy


def test_new_directory_is_removed_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), new_directory(tmp_path / "run") as run:
        (run / "half.json").write_text("{")
        raise RuntimeError("failed half-way")
    assert not (tmp_path / "run").exists()
    with new_directory(tmp_path / "run") as run:
        (run / "done.json").write_text("{}")
    assert (tmp_path / "run" / "done.json").is_file()
    with pytest.raises(InputError, match="already exists"), new_directory(tmp_path / "run"):
        pass
    with pytest.raises(RuntimeError), new_directory(tmp_path / "runs" / "a" / "b"):  # parents made, then removed
        raise RuntimeError
    assert not (tmp_path / "runs").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a writable directory"), new_directory(tmp_path / "file" / "run"):
        pass


def test_an_interrupted_atomic_output_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_devices(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(InputError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
