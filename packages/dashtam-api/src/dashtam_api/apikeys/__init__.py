"""Personal API keys (service.py says how)."""
