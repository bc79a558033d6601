"""``uv run apps/medseg``: medical image segmentation (see docs/medseg.md)."""

from pentad_medseg.cli import main

raise SystemExit(main())
