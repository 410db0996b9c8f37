"""``python -m mechinterp.cli``: the command line of the checkout that Python imports."""

import sys

from mechinterp.cli import main

sys.exit(main())
