"""core.cli.run: bad input is one line on stderr and exit 2; a bug is one line and exit 1; success is 0;
flags take dashes or underscores; SIGTERM unwinds the command like Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--no-such-flag", "1"], "unrecognized arguments: --no_such_flag 1 (see: prog fit --help)"),
        (["fti"], "invalid choice: 'fti'"),
        (["fit", "--size.value", "many"], "Parser key \"size.value\": Expected a <class 'int'>. Got value: many"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    assert run(COMMANDS, argv, "prog") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: ") and message in err, err


def test_flags_take_dashes_or_underscores(capsys):
    assert run(COMMANDS, ["fit", "--size.value=32", "--fail", "none"], "prog") == 0
    assert run({"fit_it": fit}, ["fit_it", "--size.value", "40"], "prog") == 0
    assert capsys.readouterr().out.split() == ["fitted", "32", "fitted", "40"]


def test_print_config_shows_the_parsed_values(capsys):
    assert run(COMMANDS, ["fit", "--size.value", "48", "--print-config"], "prog") == 0
    assert "value: 48" in capsys.readouterr().out


def test_a_printed_config_runs_again_from_a_file(tmp_path, capsys):
    assert run(COMMANDS, ["fit", "--size.value", "56", "--print_config"], "prog") == 0
    (tmp_path / "run.yaml").write_text(capsys.readouterr().out)
    assert run(COMMANDS, ["fit", "--config", str(tmp_path / "run.yaml")], "prog") == 0
    assert capsys.readouterr().out.strip() == "fitted 56"


def test_sigterm_unwinds_the_command_like_ctrl_c(tmp_path):
    """A command killed with SIGTERM runs its clean-up (finally blocks) and exits 143."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from pathlib import Path
        from longseq.core.cli import run

        def work() -> None:
            partial = Path({str(tmp_path / "partial")!r})
            partial.write_text("half")
            try:
                print("started", flush=True)
                time.sleep(30)
            finally:
                partial.unlink()

        sys.exit(run({{"work": work}}, ["work"], "prog"))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err.strip() == "prog: terminated"
    assert not (tmp_path / "partial").exists()
