import sys

from repro.gan.cli import main

sys.exit(main())
