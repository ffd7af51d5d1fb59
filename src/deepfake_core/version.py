"""The package's version, from its installed metadata (pyproject.toml); a source tree that is not installed
says "0+unknown"."""

from importlib import metadata

try:
    __version__ = metadata.version("deepfake-detector")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
