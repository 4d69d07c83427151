"""What every HTTP protocol shares: the answer (`respond`), the field checks (`fields`) and the refusals' table."""
