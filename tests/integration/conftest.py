"""The integration suite's fixtures live in tests/registry_servers.py (shared with tests/security)."""
