"""Backtest results: per-rule summary, A/B diff, window checks and the HTML report."""
