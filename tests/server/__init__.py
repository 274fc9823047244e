"""Real-server layer: PostgreSQL, a Prefect server and S3 (moto): exactly-once, crash, concurrency, S3, service."""
