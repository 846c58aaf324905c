"""``python -m proxy`` is ``grenier``."""

import sys

from .cli import main

sys.exit(main())
