"""walletd: a Solana wallet's trade history, streamed over Server-Sent Events."""

__version__ = "0.1.0"
