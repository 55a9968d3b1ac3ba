"""`python3 -m orch_wrapper` is the `orch` command."""

import sys

from .cli import main

sys.exit(main())
