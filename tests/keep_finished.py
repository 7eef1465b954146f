"""``python tests/keep_finished.py <module> <args>``: run ``python -m <module> <args>`` with each finished
job's checkpoint kept as ``finished.pt`` beside where ``latest.pt`` was.

The pipeline deletes a checkpoint once the job's outputs are written (``RunCheckpoint.finish``); the
DDP tests launch their ranks through this file to read what rank 0 saved (unwrapped keys, the step,
the optimizer's state) and to resume a 1-process run from it."""

from __future__ import annotations

import os
import runpy
import sys

from repro.common.checkpoint import RunCheckpoint


def _keep(self: RunCheckpoint) -> None:
    if self.path is not None and self.is_main and self.path.exists():
        os.replace(self.path, self.path.with_name("finished.pt"))


if __name__ == "__main__":
    RunCheckpoint.finish = _keep
    module = sys.argv.pop(1)
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
