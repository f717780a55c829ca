"""The `walletd stream` command: a client of the HTTP API that imports nothing of the server."""
