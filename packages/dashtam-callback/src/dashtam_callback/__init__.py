"""Dashtam's OAuth callback server: receives the institutions' redirects."""

__version__ = "0.1.0"
