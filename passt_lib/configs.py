"""Strict configuration: an unknown key is an error that lists the valid ones.

Every frozen config dataclass of the library (model, front-end, CNN, phases, data,
training, notebook parameters, study files) builds from dicts and takes overrides through
these three functions, so that a typo such as ``lrr=1e-3`` never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def field_names(cls_or_obj) -> list[str]:
    return [f.name for f in dataclasses.fields(cls_or_obj)]


def strict_keys(valid: Any, keys: Iterable[str], what: str | None = None) -> None:
    """Raise ValueError when ``keys`` holds a name that is not in ``valid`` (a dataclass, an
    instance of one, or a collection of names); ``what`` names the config in the message
    (default: the dataclass's name)."""
    names = field_names(valid) if dataclasses.is_dataclass(valid) else list(valid)
    unknown = sorted(set(keys) - set(names))
    if unknown:
        if what is None:
            what = valid.__name__ if isinstance(valid, type) else type(valid).__name__
        raise ValueError(f"unknown {what} keys {unknown}; valid keys: {', '.join(names)}")


def from_dict_strict(cls: type[T], d: Mapping[str, Any], what: str | None = None) -> T:
    """``cls(**d)`` with unknown keys rejected by name."""
    strict_keys(cls, d, what)
    return cls(**d)


def replace_strict(obj: T, **changes) -> T:
    """``dataclasses.replace`` with unknown keys rejected by name."""
    strict_keys(obj, changes)
    return dataclasses.replace(obj, **changes)


def read_structured_file(path: str | os.PathLike) -> Any:
    """The contents of a YAML (.yaml/.yml) or JSON (.json) file; a syntax error names the
    file and the line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{path}{where}: YAML syntax error: {problem}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {exc.lineno}, column {exc.colno}: JSON syntax "
                             f"error: {exc.msg}") from None
    raise ValueError(f"{path} must end in .yaml, .yml or .json")
