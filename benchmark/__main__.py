"""`python -m benchmark` is the `vaebench` command."""

import sys

from benchmark.cli import main

sys.exit(main())
