"""``uv run apps/traffic``: spatio-temporal traffic forecasting (see docs/traffic.md)."""

# Run as a folder, this module's spec is named "__main__", and Lightning's DDP launcher would start
# the other processes with `python -m __main__`, which fails; without a spec it re-runs this path.
__spec__ = None

from pentad_traffic.cli import main

raise SystemExit(main())
