"""Rollup logic: event-time windows 1m -> 5m -> 1h and the mergeable quantile sketch."""
