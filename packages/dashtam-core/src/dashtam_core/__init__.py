"""Dashtam core: settings, database engine and sessions, cache client, schema initialisers."""
