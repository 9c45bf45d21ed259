"""`python -m sync` runs the command line."""

from __future__ import annotations

import sys

from sync.cli import main

sys.exit(main())
