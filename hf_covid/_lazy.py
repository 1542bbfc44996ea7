"""Package attributes imported on first use (PEP 562), for the packages' public surfaces.

`hf_covid` and `hf_covid.data` name many functions and classes whose modules pull in torch,
datasets or matplotlib; a package lists each name with the module that defines it, and the module
is imported when the name is first read, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazy exports.

    Args:
        package: The package's ``__name__``.
        exports: Exported name -> the module that defines it (imported on first access).

    Returns:
        ``(__getattr__, __dir__)``; assign both at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
