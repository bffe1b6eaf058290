"""`python -m colorjax.cli`: the same as the `colorjax` command."""

import sys

from colorjax.cli import main

sys.exit(main())
