"""Frame source tests."""
