import sys

from repro.pretrain.cli import main

sys.exit(main())
