"""Command-line entry points (console scripts in pyproject.toml); each module's main(argv) returns an exit code."""
