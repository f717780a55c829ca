"""Trades: the model, the Helius parser, and the sources that feed streams."""
