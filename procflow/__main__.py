"""`python -m procflow` is the same as `procflow`."""

import sys

from .cli import main

sys.exit(main())
