"""What every console script shares: jsonargparse over plain typed functions, one-line errors."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError

# Errors that describe the user's input or files; anything else is a bug, still reported in one line.
USER_ERRORS = (InputError, CheckpointError, FileNotFoundError, IsADirectoryError, PermissionError)


def run(commands: dict[str, Callable], argv: list[str] | None, prog: str) -> int:
    """Parse ``argv`` into one of ``commands`` and run it.

    Bad input prints ``prog: error: <one line>`` to stderr and returns 2; an unexpected failure prints one line
    and returns 1 (``LONGSEQ_DEBUG=1`` shows the traceback). Returns 0 on success. A ValueError or TypeError
    raised while the arguments are turned into values (a dataclass config's ``__post_init__`` check, say) is
    bad input too: the command itself had not started.
    """
    from jsonargparse import CLI

    started = False

    def mark_started(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def command(*args, **kwargs):
            nonlocal started
            started = True
            return fn(*args, **kwargs)

        return command

    try:
        CLI({name: mark_started(fn) for name, fn in commands.items()}, args=argv, prog=prog, as_positional=False)
    except USER_ERRORS as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as err:  # argparse: --help (0) and usage errors (2), already printed
        return err.code if isinstance(err.code, int) else 1
    except (ValueError, TypeError) as err:
        if started:
            return _internal(prog, err)
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        return _internal(prog, err)
    return 0


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
