"""Dashtam's HTTPS API."""

__version__ = "0.1.0"
