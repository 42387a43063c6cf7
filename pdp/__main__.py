"""``python -m pdp`` runs the ``pdp`` command."""

import sys

from .cli import main

sys.exit(main())
