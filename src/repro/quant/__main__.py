import sys

from repro.quant.cli import main

sys.exit(main())
