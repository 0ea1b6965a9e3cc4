"""The `dna` command run in this process, as the genomics command tests call it."""

from __future__ import annotations

from longseq.genomics.cli import main


def dna(argv: list, capsys) -> tuple[int, str, str]:
    """`dna ARGV` (each argument as a string): its exit code, stdout and stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
