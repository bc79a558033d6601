"""``python -m pentad_vision``: the same program as ``pentad-vision`` and ``uv run apps/vision``."""

from pentad_vision.cli import main

raise SystemExit(main())
