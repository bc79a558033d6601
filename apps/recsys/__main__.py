"""``uv run apps/recsys``: recommender systems (see docs/recsys.md)."""

from pentad_recsys.cli import main

if __spec__ is not None and __spec__.name == "__main__":
    # Run as a folder (`python apps/recsys`): without this, Lightning's DDP launcher would start the
    # other ranks with `python -m __main__`, which fails; with it, they run `python <this folder>`.
    __spec__ = None

raise SystemExit(main())
