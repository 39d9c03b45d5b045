"""The control plane's Kafka I/O: publishing control events and reading `gds.control`.

The events and their fold are pure (rules/control); the Bytewax input of the flows is
`source.py`, the plain reader (backtests, the API) `reader.py`, the producer `publish.py`.
"""
