"""``python -m refnet ...``: the ``refnet`` command where it is not installed as a script
(a tree on ``PYTHONPATH``, as on a machine where nothing can be installed)."""

import sys

from refnet.cli import main

sys.exit(main())
