"""Straightforward numpy/scipy reference implementations of the streaming preprocessing (streams/):
used as test oracles and as the benchmark baseline (`volume_ms.baseline_ratio`)."""
