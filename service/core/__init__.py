"""Core: what every stage of the service uses, and nothing of any stage.

    config.py       Settings: one pydantic-settings class (PKDOT_* environment variables), `get_settings`
    logging.py      structured logs (JSON or text) with the request / stream id, secrets redacted
    metrics.py      Prometheus metrics of one app instance, stage timers
    errors.py       domain errors and their HTTP / WebSocket codes, in one place
    schemas.py      the typed request and response bodies (OpenAPI)
    middleware.py   per HTTP request: id, body-size limit, metric, log line
    threads.py      blocking work off the event loop, with the log context
"""
