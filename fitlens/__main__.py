"""`python -m fitlens`: the `fitlens` command."""

import sys

from fitlens.cli import main

sys.exit(main())
