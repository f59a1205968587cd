"""`python -m ganparity ...`: the ganparity command, also from a checkout without an install."""

import sys

from ganparity.common.cli import main

sys.exit(main())
