"""``python -m spyglass_cli``: the same as the ``spyglass`` script."""

import sys

from spyglass_cli.main import main

sys.exit(main())
