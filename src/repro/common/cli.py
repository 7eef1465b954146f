"""The arguments every stage CLI shares: ``--config`` (its config section), ``--seed``, ``--threads``.

Rules pass the stage's config section as JSON (``--config '{"n": 3}'``) or as a path to a JSON/YAML
file, and all file paths explicitly; a stage never builds paths of its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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


def add_common_args(parser: argparse.ArgumentParser, *, seed: bool = True) -> argparse.ArgumentParser:
    """Add ``--config``, ``--threads`` and (optionally) ``--seed`` to ``parser``."""
    parser.add_argument("--config", type=parse_config, default={}, help="stage config: inline JSON or a JSON/YAML file")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads (the rule's `threads`)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser
