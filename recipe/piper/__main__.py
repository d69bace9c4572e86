"""`python -m recipe.piper import|warmup ...`: the command of `recipe.piper.cli` (see `--help`)."""

import sys

from recipe.piper.cli import main

main(sys.argv[1:])
