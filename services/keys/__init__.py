"""API keys: the key record (`records`) and where records live (`stores`: static, PostgreSQL, Supabase).

Below both access (who may do what) and usage (what a key spent): each reads key records, neither owns them."""
