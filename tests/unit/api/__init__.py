"""Tests of the protocol edge, laid out as api/."""
