"""The package version, in a module of its own so any room can read it without importing the package root."""

__version__ = "0.12.0"
