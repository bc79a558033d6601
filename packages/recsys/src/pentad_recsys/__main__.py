"""``python -m pentad_recsys``: the same program as ``pentad-recsys`` and ``uv run apps/recsys``."""

from pentad_recsys.cli import main

raise SystemExit(main())
