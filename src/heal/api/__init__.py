"""The HTTP API: webhooks, REST and operational endpoints (FastAPI)."""
