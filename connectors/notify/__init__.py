"""Notification delivery: retry/breaker policy, the HTTP sink, maintenance checks, dead letters."""
