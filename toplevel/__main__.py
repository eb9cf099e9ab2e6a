"""``python -m herofossil``: the command line."""

import sys

from herofossil.cli import main

sys.exit(main())
