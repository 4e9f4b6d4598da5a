"""``python -m marketcore``: the ``marketcore`` command (``--processes`` starts its
children this way, with the interpreter it runs on)."""

import sys

from marketcore.cli import main

sys.exit(main())
