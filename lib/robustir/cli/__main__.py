"""``python -m robustir.cli``: the ``robustir`` command."""

import sys

from robustir.cli import main

sys.exit(main())
