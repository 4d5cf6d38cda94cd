"""``python -m minidiff3d ...``: the same as the ``minidiff3d`` command."""

import sys

from .cli import main

sys.exit(main())
