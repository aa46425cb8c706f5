"""robust_transfer: the library behind robust-transfer-book (Utrera et al., ICLR 2021)."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("robust_transfer")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+src"
