"""``python -m graphc``: the command line of ``graphc.cli``."""
import sys

from graphc.cli import main

sys.exit(main())
