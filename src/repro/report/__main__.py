import sys

from repro.report.cli import main

sys.exit(main())
