"""Reading accounts, balances and positions from institutions into Dashtam's tables."""
