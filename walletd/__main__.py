"""`python -m walletd` runs the command line."""

from walletd.cli import main

raise SystemExit(main())
