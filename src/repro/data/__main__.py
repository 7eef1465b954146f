import sys

from repro.data.cli import main

sys.exit(main())
