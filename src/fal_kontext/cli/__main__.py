"""``python -m fal_kontext.cli``: the ``fal-kontext`` command."""

import sys

from fal_kontext.cli import main

sys.exit(main())
