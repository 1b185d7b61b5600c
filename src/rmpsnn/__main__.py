"""``python -m rmpsnn`` (also ``torchrun -m rmpsnn ...``)."""

import sys

from .cli import main

sys.exit(main())
