"""The suite's library by concern (core, datasets, models, train, evaluate, report); the CLIs at this level.

Every script imports from here before MindSpore loads, so this is the one place that quiets MindSpore's
C++ log (``GLOG_v=3``: errors only) for every script, CLI, benchmark and test.
"""
import os

os.environ.setdefault("GLOG_v", "3")
