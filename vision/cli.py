"""The `vision` console script: one subcommand per task (``vision --help`` lists them)."""

from __future__ import annotations

from core.cli import run
from vision.tasks.btb3d_cli import convert3d, decode3d, tokenize3d


def main(argv: list[str] | None = None) -> int:
    return run(
        {
            "tokenize3d": tokenize3d,
            "decode3d": decode3d,
            "convert3d": convert3d,
        },
        argv,
        prog="vision",
    )


if __name__ == "__main__":
    raise SystemExit(main())
