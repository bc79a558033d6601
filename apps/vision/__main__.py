"""``uv run apps/vision``: image classification (see docs/vision.md)."""

from pentad_vision.cli import main

raise SystemExit(main())
