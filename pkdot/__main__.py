"""`python -m pkdot ...`: the same as the `pkdot` console script."""

import sys

from pkdot.cli import main

sys.exit(main())
