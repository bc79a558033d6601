"""``uv run apps/traffic``: spatio-temporal traffic forecasting (see docs/traffic.md)."""

from pentad_traffic.cli import main

raise SystemExit(main())
