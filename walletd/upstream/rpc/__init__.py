"""The standard Solana JSON-RPC adapter: any provider's getTransactionsForAddress, else
getSignaturesForAddress + getTransaction; the reader of getTransaction results."""
