"""`python -m agent` is the same as the `shopedge` command."""

from agent.cli import main

raise SystemExit(main())
