"""Operations of a flow process: metrics, health, the HTTP endpoints, heartbeats, self-metrics, recovery."""
