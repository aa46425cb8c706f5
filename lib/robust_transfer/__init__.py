"""robust_transfer: the library behind robust-transfer-book (Utrera et al., ICLR 2021).

The engine (every module here) computes and never plots; :mod:`robust_transfer.chapters` holds
what only the book shows, one module per notebook. Data flow of one section: ``config.resolve``
-> ``zoo.load`` (sources) -> ``data.load`` + class-covering subsets -> ``transfer.run`` ->
``store`` / ``sweep`` -> ``stats`` -> ``chapters.chNN_*`` -> the notebook. The README's "Layout"
section names the home of each concept.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("robust_transfer")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+src"
