"""The fastgates benchmark suite (pytest-benchmark) and report; not part of the package."""
