"""edge-inspector: visual inspection daemon for production lines and the toolchain behind its models."""

__version__ = "0.1.0"
