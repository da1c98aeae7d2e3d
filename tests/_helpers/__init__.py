"""Helpers of the reliability tests (not collected: no test_ prefix)."""
