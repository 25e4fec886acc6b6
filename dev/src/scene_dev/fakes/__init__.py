"""Fakes of external services, shared by every test directory and `make run`'s offline mode."""
