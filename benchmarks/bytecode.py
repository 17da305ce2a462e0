"""Measure procflow as it is installed: its modules compiled to bytecode first.

pip compiles a package's modules when it installs it. A checkout run in place compiles
them on first import and caches the result in `__pycache__`, unless the environment sets
PYTHONDONTWRITEBYTECODE (this project's machines do): then every process, the parent and
each worker, compiles procflow's ~75 modules from source again, ~80-115 ms each here, a
cost that neither an installed procflow nor the peers (compiled in site-packages) pay.
"""

from __future__ import annotations

import compileall
from pathlib import Path


def compile_bytecode(*directories: Path) -> None:
    """procflow's package and `directories` to `__pycache__` (git ignores it); a directory
    that cannot be written is left as it is (an installed package is compiled already)."""
    import procflow

    for directory in (Path(procflow.__file__).resolve().parent, *directories):
        compileall.compile_dir(str(directory), quiet=2)
