"""Benchmark support for rinr-data, kept out of the library: codec comparisons, classic-codec baselines, paired
detector trainings, the BENCHMARKS.md writer, and the logic of the `tools/` benchmark scripts and demo.

Every `tools/<name>.py` script is a thin wrapper around `rinr_bench.<name>.main`. The library (`rinr_data`) never
imports this package.
"""
