"""Usage accounting: per-request metrics, credits, the durable request log and the database it writes to."""
