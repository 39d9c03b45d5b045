"""The control-plane HTTP API: Alertmanager v2 silences and alerts (amtool works against it),
acknowledgements, the alert history, `/webhook/proxy`, bearer-token auth with an audit trail.

`service.ControlService` holds the logic (the console calls the same methods); `app.create_app`
is the thin Starlette layer; `python -m connectors.api` runs it under uvicorn.
"""
