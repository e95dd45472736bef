"""Exports of an account's transactions (service.py says how)."""
