"""``python -m robust_transfer <command>``: see :mod:`robust_transfer.cli`."""
import sys

from .cli import main

sys.exit(main())
