"""The benchmarks: every figure in docs/results.md, reproducible.

Run one from the repository's root as `python -m benchmarks.<name>`
(`python -m benchmarks.run` runs them all; `python benchmarks/<name>.py`
works too). `common` holds what they share; each other module is one
benchmark, and the speech ones build on `speech_bench`'s task and rows.
"""
