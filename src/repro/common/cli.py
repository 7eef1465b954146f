"""What every ``python -m repro.<stage>`` shares: its common arguments, its set-up and its runner.

* :func:`add_common_args`: ``--config`` (the stage's config section, inline JSON or a JSON/YAML file),
  ``--seed``, ``--threads``, ``--debug``. Rules pass every file path explicitly; a stage never builds
  paths of its own.
* :func:`start`: the first thing a command does (threads, config checked and completed from the schema,
  seeds, start time).
* :func:`run_cli`: the exit-code contract (``__main__`` runs ``main`` through it): 0 done, 2 bad input or
  config (one line naming it), 3 non-finite loss, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parse_config(text: str) -> dict[str, Any]:
    """A JSON object given inline, or a path to a .json/.yaml file holding one."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"--config is not valid JSON: {exc}") from exc
    else:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"--config: no such file {text!r} (and not inline JSON)")
        import yaml

        value = yaml.safe_load(path.read_text())
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--config must be a JSON/YAML object")
    return value


def start(args: argparse.Namespace, sections: str | Sequence[str] | None, *, ignore: Sequence[str] = ()) -> argparse.Namespace:
    """The set-up every stage command does first, in this order, before any work.

    Pins torch/OpenMP to ``--threads`` (1 for commands without it); checks ``--config`` against the schema ``sections`` and fills in
    the stage's defaults (:func:`repro.common.config.stage_config`; ``None``: the command reads no config);
    seeds Python, numpy and torch with ``--seed`` (commands without one: 0); stamps ``args.started``.
    """
    from repro.common.config import stage_config
    from repro.common.provenance import now_iso
    from repro.common.runtime import configure_threads, seed_everything

    configure_threads(getattr(args, "threads", 1))
    if sections is not None:
        args.config = stage_config(args.config, sections, ignore=ignore)
    seed_everything(getattr(args, "seed", None) or 0)
    args.started = now_iso()
    args.t0 = time.perf_counter()
    return args


def job_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """A stage's job dataclass (its fields: what the command trains, its seed, its paths) from parsed arguments."""
    import dataclasses

    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def log(msg: str) -> None:
    """One line of a job's progress on stderr (the rule sends it to the job's log file), flushed at once."""
    import sys

    print(msg, file=sys.stderr, flush=True)


def done(prog: str, args: argparse.Namespace, summary: Any) -> int:
    """Log a command's one-line summary with its wall time (stderr: the job log) and return exit code 0."""
    import sys

    print(f"[{prog} {args.command}] done in {time.perf_counter() - args.t0:.1f}s: {json.dumps(summary, default=str)}",
          file=sys.stderr, flush=True)
    return 0


def add_common_args(parser: argparse.ArgumentParser, *, seed: bool = True, threads: bool = True) -> argparse.ArgumentParser:
    """Add ``--config``, ``--debug`` and (optionally) ``--seed`` and ``--threads`` to ``parser``."""
    parser.add_argument("--config", type=parse_config, default={}, help="stage config: inline JSON or a JSON/YAML file")
    if threads:
        parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads (the rule's `threads`)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error (run_cli)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


# Exit codes of every `python -m repro.<stage>` (the runner below owns them).
EXIT_OK = 0
EXIT_BAD_INPUT = 2  # a missing/unreadable input or a bad config value; the message names it
EXIT_NON_FINITE = 3  # training diverged (NaN/inf loss)
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C); a checkpointed job resumes on the next run

# Errors a user can cause and fix (bad input, bad config, unreachable server): one line, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                     IsADirectoryError, PermissionError, ConnectionError)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            *, prog: str | None = None) -> int:
    """Run a stage's ``main(argv)`` and turn its failures into one line on stderr and an exit code.

    Bad input (:data:`EXPECTED_ERRORS`, :class:`~repro.common.errors.InputError`) exits 2, a non-finite loss 3, Ctrl-C 130, each
    with one line naming the problem. ``--debug`` anywhere in ``argv`` (or ``REPRO_DEBUG=1``) is
    removed before ``main`` sees it and makes these errors show their traceback; any other exception
    is a bug and always does.
    """
    import os
    import sys
    import traceback
    import urllib.error

    from repro.common.errors import InputError, NonFiniteLossError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("REPRO_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    prog = prog or os.path.basename(sys.argv[0] or "repro")
    command = next((a for a in args if not a.startswith("-")), "")

    def fail(code: int, exc: BaseException) -> int:
        if debug:
            traceback.print_exc()
        text = " ".join(str(exc).split())
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"{prog} {command}: {type(exc).__name__}: {text}{hint}", file=sys.stderr, flush=True)
        return code

    try:
        rc = main(args)
    except KeyboardInterrupt as exc:
        return fail(EXIT_INTERRUPTED, exc or KeyboardInterrupt("interrupted"))
    except (NonFiniteLossError, FloatingPointError) as exc:
        return fail(EXIT_NON_FINITE, exc)
    except EXPECTED_ERRORS + (InputError, urllib.error.URLError) as exc:
        return fail(EXIT_BAD_INPUT, exc)
    return EXIT_OK if rc is None else int(rc)
