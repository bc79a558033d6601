"""``uv run apps/recsys``: recommender systems (see docs/recsys.md)."""

from pentad_recsys.cli import main

raise SystemExit(main())
