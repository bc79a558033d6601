"""Core tests import the toy app (``toy_app.py``) that sits beside them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
