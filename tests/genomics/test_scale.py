"""``dna embed`` and ``dna score`` spread over processes by Lightning's predict loop write the same file as one
process, byte for byte (2 CPU processes over gloo, as ``--devices 2`` on a laptop)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longseq.core.registry import from_pretrained
from longseq.genomics.scale import BatchStream

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"


def test_batches_are_dealt_to_ranks_and_workers_by_index(monkeypatch):
    """Batch k runs on rank k % world and, there, on worker k // world % workers: every batch exactly once."""
    import torch.distributed as dist

    import longseq.genomics.scale as scale

    seen = []
    for rank in range(2):
        for worker in range(3):
            monkeypatch.setattr(dist, "is_initialized", lambda: True)
            monkeypatch.setattr(dist, "get_rank", lambda r=rank: r)
            monkeypatch.setattr(dist, "get_world_size", lambda: 2)
            info = type("Info", (), {"id": worker, "num_workers": 3})
            monkeypatch.setattr(scale, "get_worker_info", lambda i=info: i)
            got = list(BatchStream(lambda: range(20), lambda plan: {"plan": plan * 10}))
            assert all(k % 2 == rank and k // 2 % 3 == worker and batch == {"plan": k * 10} for k, batch in got)
            seen += [k for k, _ in got]
    assert sorted(seen) == list(range(20))


def run_dna(*args, cwd: Path) -> subprocess.CompletedProcess:
    # One thread per process in both runs: CPU kernels may sum in another order with another thread count.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "longseq.genomics.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_two_processes_write_the_same_files_as_one(tmp_path):
    rng = np.random.default_rng(0)
    records = {f"r{i}": "".join(rng.choice(list("ACGT"), n)) for i, n in enumerate((700, 90, 333, 41, 500))}
    (tmp_path / "in.fa").write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    from_pretrained("hyenadna-test").save_pretrained(tmp_path / "hyena")
    from_pretrained("caduceus-ph-test").save_pretrained(tmp_path / "ph")
    jobs = {
        "mean": ["embed", "--input", "in.fa", "--model", "hyena", "--window", 64, "--batch_size", 3],
        "none": ["embed", "--input", "in.fa", "--model", "ph", "--window", 64, "--batch_size", 2, "--pooling", "none"],
        "score": ["score", "--vcf", EXAMPLES / "lambda_variants.vcf", "--reference", EXAMPLES / "lambda_NC_001416.fa",
                  "--model", "ph", "--window", 128, "--batch_size", 2],
    }  # fmt: skip
    for name, args in jobs.items():
        suffix = ".tsv" if name == "score" else ".npz"
        one = run_dna(*args, "--output", f"one{suffix}", cwd=tmp_path)
        assert one.returncode == 0, one.stderr
        two = run_dna(*args, "--output", f"two{suffix}", "--devices", 2, "--strategy", "ddp", cwd=tmp_path)
        assert two.returncode == 0, two.stderr
        assert (tmp_path / f"one{suffix}").read_bytes() == (tmp_path / f"two{suffix}").read_bytes(), name
        (tmp_path / f"one{suffix}").unlink()
        (tmp_path / f"two{suffix}").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyena", "in.fa", "ph"]  # no shards left behind


def test_dataloader_workers_give_the_same_file_and_one_line_errors(tmp_path, capsys):
    from longseq.genomics.cli import main

    rng = np.random.default_rng(1)
    (tmp_path / "in.fa").write_text("".join(f">r{i}\n{''.join(rng.choice(list('ACGT'), 150))}\n" for i in range(3)))
    (tmp_path / "bad.fa").write_text(">ok\nACGT\n>bad\nACGTXACGT\n")
    from_pretrained("hyenadna-test").save_pretrained(tmp_path / "m")  # a preset alone draws new weights each time
    args = ["embed", "--input", tmp_path / "in.fa", "--model", tmp_path / "m", "--window", 40, "--batch_size", 2]
    for workers in (0, 2):
        assert main([str(a) for a in [*args, "--output", tmp_path / f"w{workers}.npz", "--num_workers", workers]]) == 0
    assert (tmp_path / "w0.npz").read_bytes() == (tmp_path / "w2.npz").read_bytes()
    capsys.readouterr()
    args = ["embed", "--input", tmp_path / "bad.fa", "--model", tmp_path / "m", "--num_workers", 2]
    assert main([str(a) for a in [*args, "--output", tmp_path / "bad.npz"]]) == 2
    err = capsys.readouterr().err
    assert err == "dna: error: bad: character 'X' at position 5 is not a base\n"
    assert not (tmp_path / "bad.npz").exists()
