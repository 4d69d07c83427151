"""Tests of api/protocols/wyoming."""
