"""``python -m robust_transfer <command>``: see :mod:`robust_transfer.cli`."""
import os
import sys

from .cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # output piped into e.g. `head`, which closed it: stop quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
