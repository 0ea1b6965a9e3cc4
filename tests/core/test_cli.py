"""core.cli.run: bad input is one line on stderr and exit 2; a bug is one line and exit 1; success is 0."""

from dataclasses import dataclass

import pytest

from longseq.core.cli import run
from longseq.core.io import InputError


@dataclass(kw_only=True)
class Size:
    value: int = 16

    def __post_init__(self):
        if self.value % 8:
            raise ValueError(f"value must be a multiple of 8; got {self.value}")


DEFAULT_SIZE = Size()


def fit(size: Size = DEFAULT_SIZE, fail: str = "none") -> None:
    """Pretend to fit.

    Args:
        size: a validated config.
        fail: "input" raises InputError, "bug" raises RuntimeError, "value" raises ValueError inside the command.
    """
    if fail == "input":
        raise InputError("empty file: x.fa")
    if fail == "bug":
        raise RuntimeError("boom\nsecond line")
    if fail == "value":
        raise ValueError("inside the command")
    print(f"fitted {size.value}")


COMMANDS = {"fit": fit, "other": fit}


def test_success(capsys):
    assert run(COMMANDS, ["fit", "--size.value", "24"], "prog") == 0
    assert "fitted 24" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["fit", "--size.value", "12"], 2, "prog: error: value must be a multiple of 8; got 12"),
        (["fit", "--fail", "input"], 2, "prog: error: empty file: x.fa"),
        (["fit", "--fail", "bug"], 1, "prog: internal error: RuntimeError: boom second line"),
        (["fit", "--fail", "value"], 1, "prog: internal error: ValueError: inside the command"),
    ],
)
def test_errors_are_one_line(capsys, argv, code, message):
    assert run(COMMANDS, argv, "prog") == code
    err = capsys.readouterr().err.strip()
    assert err.startswith(message)
    assert "\n" not in err and "Traceback" not in err


def test_usage_error_exits_2(capsys):
    assert run(COMMANDS, ["fit", "--no-such-flag", "1"], "prog") == 2
    assert "Traceback" not in capsys.readouterr().err
