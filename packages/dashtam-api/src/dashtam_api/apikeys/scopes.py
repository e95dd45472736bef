"""What an API key may do: each scope opens these operations (by operation id), nothing else.
An operation not listed here (the account's own settings: password, sessions, second factor,
API keys, webhooks, SimpleFIN access, invitations) refuses API keys whatever their scopes: a
key that leaks cannot take the account over."""

SCOPES = {
    "accounts:read": "Accounts, their balances and positions, net worth, imports.",
    "accounts:write": "Make manual accounts and import files into accounts.",
    "transactions:read": "Transactions, and their exports.",
    "providers:read": "Providers, their connections' state, sync runs, the provider types.",
    "providers:write": "Add, rename, connect, refresh, sync and remove providers.",
}

OPERATION_SCOPES = {
    "providers-types": "providers:read",
    "providers-list": "providers:read",
    "providers-get": "providers:read",
    "connections-status": "providers:read",
    "connections-banks": "providers:read",
    "accounts-sync-runs": "providers:read",
    "providers-create": "providers:write",
    "providers-rename": "providers:write",
    "providers-delete": "providers:write",
    "connections-start": "providers:write",
    "connections-exchange": "providers:write",
    "connections-revoke": "providers:write",
    "connections-refresh": "providers:write",
    "accounts-sync": "providers:write",
    "accounts-of-provider": "accounts:read",
    "accounts-list": "accounts:read",
    "accounts-get": "accounts:read",
    "accounts-positions": "accounts:read",
    "accounts-balances": "accounts:read",
    "accounts-net-worth": "accounts:read",
    "accounts-create": "accounts:write",
    "imports-create": "accounts:write",
    "imports-get": "accounts:read",
    "imports-of-account": "accounts:read",
    "transactions-list": "transactions:read",
    "transactions-of-account": "transactions:read",
    "transactions-get": "transactions:read",
    "transactions-export": "transactions:read",
}
assert set(OPERATION_SCOPES.values()) <= set(SCOPES)
