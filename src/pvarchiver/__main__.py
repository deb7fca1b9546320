"""``python -m pvarchiver`` is the same as the ``pvarchiver`` console script."""

import sys

from pvarchiver.cli.main import main

sys.exit(main())
