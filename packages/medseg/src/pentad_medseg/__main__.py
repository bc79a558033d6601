"""``python -m pentad_medseg``: the same program as ``pentad-medseg`` and ``uv run apps/medseg``."""

from pentad_medseg.cli import main

raise SystemExit(main())
