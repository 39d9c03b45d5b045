"""PromQL: mapping Prometheus rule files and promtool suites onto our rules."""
