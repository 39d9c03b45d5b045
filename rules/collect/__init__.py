"""Collector policy: which series a collector may emit (allowlists, cardinality)."""
