"""Leave packages out of a Python process without uninstalling them: with this folder on PYTHONPATH, every module
named in BLOCK_IMPORTS (comma-separated top-level names) fails to import, as if its package were not installed
(ModuleNotFoundError), or, with BLOCK_IMPORTS_AS=broken, as if it were installed but broken (a plain ImportError).
Children inherit the environment, so a server a harness starts is blocked too. Tests only."""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {name.strip() for name in os.environ.get("BLOCK_IMPORTS", "").split(",") if name.strip()}


class Blocked(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] not in BLOCKED:
            return None
        if os.environ.get("BLOCK_IMPORTS_AS") == "broken":
            raise ImportError(f"{fullname} is installed but broken (BLOCK_IMPORTS_AS=broken)")
        raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


if BLOCKED:
    sys.meta_path.insert(0, Blocked())
