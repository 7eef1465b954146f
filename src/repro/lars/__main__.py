import sys

from repro.lars.cli import main

sys.exit(main())
