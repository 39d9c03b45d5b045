"""Routing and grouping of alert notifications in Alertmanager's configuration language (pure logic)."""
