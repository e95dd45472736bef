"""Dashtam as a SimpleFIN server (service.py says how)."""
