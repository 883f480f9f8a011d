"""`python -m scanner`: the same as the `reachscan` command."""

import sys

from scanner.cli import main

sys.exit(main())
