"""Tests of api/protocols, one folder per protocol."""
