"""Bootstrap of the commands under tools/ run as scripts (``python tools/lr_find.py ...``), and of bench/.

Python puts the script's folder (tools/), not the repository root, on ``sys.path``; a command imports this
module first (as the top-level ``repo_root``, found beside it) when ``__package__`` is empty, which adds
the root so that ``from tools ...`` works, and quiets MindSpore's C++ log (``GLOG_v=3``) as the scripts at
the root do. bench/common.py runs this file too. Imported as ``tools.x`` (tests, other modules) a command
skips it; tests get the root from pytest.ini (``pythonpath``). The one place the suite patches ``sys.path``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")
