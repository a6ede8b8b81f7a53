"""`python -m mcpsec` is the same as the `mcpsec` command."""

import sys

from mcpsec.cli.main import main

sys.exit(main())
