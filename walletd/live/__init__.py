"""Live follow (SPEC §1): a poller per followed wallet and the fan-out to its followers."""
