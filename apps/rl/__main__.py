"""``uv run apps/rl ...``: reinforcement-learning agents (see docs/rl.md)."""

from pentad_rl.cli import main

raise SystemExit(main())
