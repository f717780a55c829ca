"""Trades: the model, the ledger (balance changes -> trade), summaries, Solana identifiers."""
