"""`python -m recipe.compare`: the command of `recipe.evaluation.compare` (see its docstring, or `--help`)."""

import sys

from recipe.evaluation.compare import main

if __name__ == "__main__":
    sys.exit(main())
