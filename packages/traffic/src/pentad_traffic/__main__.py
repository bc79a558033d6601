"""``python -m pentad_traffic``: the same program as ``pentad-traffic`` and ``uv run apps/traffic``."""

from pentad_traffic.cli import main

raise SystemExit(main())
