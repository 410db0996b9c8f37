"""`python -m mechinterp.cli ...`: the same as the `mechinterp` command."""

import sys

from mechinterp.cli import main

sys.exit(main())
