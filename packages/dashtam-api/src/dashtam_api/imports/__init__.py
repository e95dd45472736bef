"""Files imported into accounts (OFX/QFX, CSV with a mapping, CAMT.053), without duplicates."""
