"""``python -m RadGPTLogic ...`` runs the ``radgpt`` command line."""

import sys

from .cli import main

sys.exit(main())
