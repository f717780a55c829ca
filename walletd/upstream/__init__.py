"""Where trades come from: the source protocol, shared and cached histories, the demo
generator, the Helius adapter, pacing and the circuit breaker.

An adapter turns its wire format into a wallet's balance changes;
`walletd.trades.ledger` alone turns those into trades.
"""
