"""Repository-wide pytest set-up (loaded before tests/ and notebooks/ are collected).

Notebook 11 runs torchvision's pretrained COCO weights when it can get them, and falls back to the
shipped shapes model when it cannot (no cache, no network: CI). Its stored outputs are those of the
offline path, so under test we force that path everywhere, also on a machine that happens to have
the weights cached: otherwise nbval would compare the online outputs against the offline ones.
The online path has its own test (tests/test_pretrained.py, with a model built without weights).
"""

import os

os.environ.setdefault("MASKRCNN_SBS_OFFLINE", "1")

# Property tests explore the same examples on every run and every machine: a red CI is then a real,
# reproducible failure, never a lucky draw. (Tests may still set max_examples etc. themselves.)
from hypothesis import settings  # noqa: E402

settings.register_profile("series", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("series")
