"""walletd's test suite: real servers over real HTTP, a real Redis, fake upstreams."""
