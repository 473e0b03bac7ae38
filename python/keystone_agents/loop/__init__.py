"""The task loop: prefetch → ingest → prioritize → execute, one concern per module; `runner` ties them."""
