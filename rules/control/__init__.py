"""The control plane as pure data: silences, acknowledgements and rule-set reloads as events.

Events travel on the compacted `gds.control` topic (connectors/control); every reader folds
them the same way (`events.fold`), so the alerting job, the delivery job, the API and a backtest
agree on which silences exist and when each applies.
"""
