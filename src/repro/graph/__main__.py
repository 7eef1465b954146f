import sys

from repro.graph.cli import main

sys.exit(main())
