"""``python -m grenier`` is the ``grenier`` command."""

import sys

from .cli import main

sys.exit(main())
