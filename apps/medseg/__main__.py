"""``uv run apps/medseg``: medical image segmentation (see docs/medseg.md)."""

# Run as a folder (`python apps/medseg`), this module's spec is named "__main__", and Lightning's DDP
# launcher would start the other processes with `python -m __main__`, which fails; without a spec it
# runs this folder again.
__spec__ = None

from pentad_medseg.cli import main

raise SystemExit(main())
