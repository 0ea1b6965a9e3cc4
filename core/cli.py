"""What every console script shares: one flag grammar over plain typed functions, one-line errors.

The grammar (``dna``, ``tts``, ``vision``, ``bytelm``):

- Training commands take ``--trainer.*`` (`longseq.core.train.TrainerConfig`: max_steps, devices, num_nodes,
  strategy, precision, accumulate_grad_batches, checkpoint_dir, resume, log_dir, seed, ...), ``--optimizer.*``
  (`OptimizerConfig`) and ``--data.*`` (the command's data dataclass), plus ``--model``.
- Inference commands share ``--model``, ``--device`` and ``--output``.
- Every command takes ``--config run.yaml`` and ``--print_config``; flags take dashes or underscores.

Bad input (an unknown flag, a value of the wrong type, a dataclass config's ``__post_init__`` check, an
`InputError` or `CheckpointError` raised by the command) prints ``prog: error: <one line>`` and exits 2.
Ctrl-C and SIGTERM stop the command the same way, so its clean-up (temporary files) runs either way.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Callable

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError

# Errors that describe the user's input or files; anything else is a bug, still reported in one line.
USER_ERRORS = (InputError, CheckpointError, FileNotFoundError, IsADirectoryError, PermissionError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is so that it unwinds (and cleans up) as after Ctrl-C."""


def run(commands: dict[str, Callable], argv: list[str] | None, prog: str) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into one of ``commands`` and run it.

    Returns 0 on success, 2 on bad input, 130 after Ctrl-C, 143 after SIGTERM, and 1 for an unexpected failure
    (one line; ``LONGSEQ_DEBUG=1`` shows the traceback). A ValueError or TypeError raised while the arguments
    are turned into values (a dataclass config's ``__post_init__`` check, say) is bad input too: the command
    itself had not started.
    """
    from jsonargparse import CLI

    argv = underscored(sys.argv[1:] if argv is None else list(argv))
    started = False

    def mark_started(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def command(*args, **kwargs):
            nonlocal started
            started = True
            return fn(*args, **kwargs)

        return command

    previous = _raise_on_sigterm()
    try:
        CLI(
            {name: mark_started(fn) for name, fn in commands.items()},
            args=argv,
            prog=prog,
            as_positional=False,
            exit_on_error=False,
        )
    except USER_ERRORS as err:
        return _bad_input(prog, err)
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as err:  # --help and --print_config (0)
        return err.code if isinstance(err.code, int) else 1
    except argparse.ArgumentError as err:  # a usage error (exit_on_error=False keeps it from printing the usage)
        subcommand = next((arg for arg in argv if arg in commands), None)
        print(
            f"{prog}: error: {_one_line(err)} (see: {prog} {subcommand or ''} --help)".replace("  ", " "),
            file=sys.stderr,
        )
        return 2
    except (ValueError, TypeError) as err:
        if started:
            return _internal(prog, err)
        return _bad_input(prog, err)
    except Exception as err:
        return _internal(prog, err)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def underscored(argv: list[str]) -> list[str]:
    """``--prompt-audio x`` -> ``--prompt_audio x``: flags take dashes or underscores (values are left alone)."""
    fixed = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        fixed.append(arg)
    return fixed


def _raise_on_sigterm():
    """Turn SIGTERM into `Terminated`; returns the handler to restore (None off the main thread, where Python
    lets no one set signal handlers)."""

    def handler(signum, frame):
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _bad_input(prog: str, err: BaseException) -> int:
    print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
    return 2


def _internal(prog: str, err: Exception) -> int:
    """A failure inside a command that is not a known kind of bad input: one line, or the traceback on request."""
    if os.environ.get("LONGSEQ_DEBUG"):
        raise err
    message = f"{prog}: internal error: {type(err).__name__}: {_one_line(err)} (LONGSEQ_DEBUG=1 shows more)"
    print(message, file=sys.stderr)
    return 1


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    return " ".join(text.split())
