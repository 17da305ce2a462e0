"""Map `prefect.*` imports onto procflow; stub what procflow lacks (and record it).

Installed by the conftest that `run.sh` writes into a Prefect checkout: a meta-path finder
gives `prefect.X` as a proxy of `procflow.X`; a name procflow lacks becomes a stub class
(a MagicMock subclass, so class-level use such as subclassing or `Enum.MEMBER` works).
"""
import importlib, importlib.abc, importlib.util, sys, types, os
from unittest.mock import MagicMock

MISSING = os.environ.get("SHIM_MISSING", os.path.join(os.path.dirname(__file__), "missing.txt"))


def _note(what):
    with open(MISSING, "a") as f:
        f.write(what + "\n")


class _StubMeta(type):
    def __getitem__(cls, item):
        return cls

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return MagicMock(name=f"{cls.__name__}.{name}")


class Proxy(types.ModuleType):
    def __init__(self, name, real):
        super().__init__(name)
        object.__setattr__(self, "_real", real)
        self.__path__ = []

    def __getattr__(self, attr):
        real = object.__getattribute__(self, "_real")
        if attr.startswith("__"):
            raise AttributeError(attr)
        if real is not None:
            try:
                return getattr(real, attr)
            except AttributeError:
                pass
        _note(f"{self.__name__}.{attr}" + ("" if real is not None else "  (module stub)"))
        value = _StubMeta(attr, (MagicMock,), {})
        setattr(self, attr, value)
        return value


class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        target = "procflow" + spec.name[len("prefect"):]
        try:
            real = importlib.import_module(target)
        except ModuleNotFoundError:
            real = None
        return Proxy(spec.name, real)

    def exec_module(self, module):
        pass


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "prefect" or name.startswith("prefect."):
            return importlib.util.spec_from_loader(name, Loader(), is_package=True)
        return None


sys.meta_path.insert(0, Finder())
