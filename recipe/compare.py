"""`python -m recipe.compare`: the command of `recipe.evaluation.compare` (see its docstring, or `--help`)."""

import sys

from recipe.errors import run_command
from recipe.evaluation.compare import PROG, main

if __name__ == "__main__":
    sys.exit(run_command(PROG, main))
