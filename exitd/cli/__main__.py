"""`python -m exitd.cli`: the `exitd` command."""

import sys

from exitd.cli.main import main

sys.exit(main())
