"""The package version, in one place (the User-Agent header and ``fal_kontext.__version__`` read it)."""

__version__ = "0.1.0"
