"""``python -m pentad_rl``: the same program as ``pentad-rl`` and ``uv run apps/rl``."""

from pentad_rl.cli import main

raise SystemExit(main())
