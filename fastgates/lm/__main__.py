"""``python -m fastgates.lm``: the ``fastgates-lm`` command line."""

import sys

from .cli import main

sys.exit(main())
