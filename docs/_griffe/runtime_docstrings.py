"""A griffe extension for the API pages: class docstrings assembled at import time.

A class whose body sets ``__doc__ = "..." + SHARED + "..."`` (``dask_softkmeans.rbf``
shares the parameter sections of its two estimators this way) has no docstring that
static analysis can read.  For such a class only, this imports its module and takes the
docstring of the class object.  Nothing else is imported.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


class RuntimeDocstrings(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if cls.docstring is not None or "__doc__" not in cls.members:
            return
        value = getattr(importlib.import_module(cls.module.path), cls.name).__doc__
        if value:
            cls.docstring = griffe.Docstring(inspect.cleandoc(value), parent=cls)
