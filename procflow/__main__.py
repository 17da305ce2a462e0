"""`python -m procflow` is the same as `procflow`."""

import sys

from .launch import main

sys.exit(main())
