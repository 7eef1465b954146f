import sys

from repro.common.cli import run_cli
from repro.lars.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m repro.lars"))
