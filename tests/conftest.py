"""Cross-package integration tests: every app in apps/, end to end, through its command line."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
