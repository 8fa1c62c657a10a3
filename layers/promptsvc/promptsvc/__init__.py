"""promptsvc: a managed prompt service on AWS serverless (shared Lambda layer package)."""
