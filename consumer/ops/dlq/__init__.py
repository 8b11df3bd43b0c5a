"""Dead-letter tooling: read records, stats, replay (`fboc dlq ...`)."""
