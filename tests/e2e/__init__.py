"""End-to-end and fault tests: the real services as separate processes (tests/stack.py)."""
