"""API keys (format, hashing, records, stores), the auth and rate-limit middleware, the revocation
sweep, `walletd keys`.
"""
