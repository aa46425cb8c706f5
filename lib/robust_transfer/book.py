"""``python -m robust_transfer.book``: the book build (see :mod:`robust_transfer.build`)."""
from .build import main

if __name__ == "__main__":
    main()
