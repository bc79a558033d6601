"""``uv run apps/vision``: image classification (see docs/vision.md)."""

# Run as a folder (`python apps/vision`), this module's spec is named "__main__", and Lightning's DDP
# launcher would start the other processes with `python -m __main__`, which fails; without a spec it
# runs this folder again.
__spec__ = None

from pentad_vision.cli import main

raise SystemExit(main())
