"""Usage accounting: per-request metrics, credits, the durable request log (the database pool is services/database.py)."""
