"""Lazy public names for a package: ``__getattr__`` that imports a name's module on first use."""

from importlib import import_module


def lazy_getattr(package: str, exports: dict[str, str], namespace: dict):
    """A module-level ``__getattr__`` for ``package``: ``exports`` maps a public name to the module
    defining it; the value is imported on first access and cached in ``namespace``."""

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
