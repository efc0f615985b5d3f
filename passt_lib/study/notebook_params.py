"""Read a notebook's ``parameters`` cell and check parameter sets against it.

The cell holds one parameter per line, ``name: type = value  # help`` (the
form ``papermill --help-notebook`` understands). Papermill itself only warns
about a name the notebook does not declare; the study runner calls
:func:`resolve_params` before anything starts, so a typo fails at once with
the list of valid names.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

# Types a parameter may declare: what papermill can translate to code.
TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int", "str", ... or "int | None"
    default: Any
    help: str

    @property
    def optional(self) -> bool:
        return self.type.endswith("| None")

    @property
    def base_type(self) -> str:
        return self.type.split("|")[0].strip()


def parameters_cell(nb: nbformat.NotebookNode) -> tuple[int, nbformat.NotebookNode]:
    """(index, cell) of the code cell tagged ``parameters``."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i, cell
    raise ValueError("the notebook has no code cell tagged 'parameters'")


def _comments(source: str) -> dict[int, str]:
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def parse_parameters(source: str) -> dict[str, Param]:
    """Parameters declared in a parameters-cell source, in order."""
    tree = ast.parse(source)
    comments = _comments(source)
    params: dict[str, Param] = {}
    for node in tree.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            raise ValueError(
                f"parameters cell line {node.lineno}: expected `name: type = value  # help`, "
                f"got {ast.unparse(node)!r}"
            )
        name = node.target.id
        type_ = ast.unparse(node.annotation).replace("Optional[", "").rstrip("]")
        if type_.split("|")[0].strip() not in TYPES:
            raise ValueError(
                f"parameter {name!r} has type {type_!r}; expected one of {sorted(TYPES)} "
                f"(optionally `| None`)"
            )
        if node.value is None:
            raise ValueError(f"parameter {name!r} has no default value")
        try:
            default = ast.literal_eval(node.value)
        except ValueError as e:
            raise ValueError(f"parameter {name!r}: default must be a literal, got "
                             f"{ast.unparse(node.value)!r}") from e
        params[name] = Param(name, type_, default, comments.get(node.lineno, ""))
    return params


def notebook_parameters(path: str | Path) -> dict[str, Param]:
    """The declared parameters of the notebook at ``path``."""
    nb = nbformat.read(str(path), as_version=4)
    _, cell = parameters_cell(nb)
    return parse_parameters(cell.source)


def check_type(param: Param, value: Any) -> Any:
    """``value`` converted to the declared type (int -> float only), or a ValueError."""
    if value is None and param.optional:
        return None
    allowed = TYPES[param.base_type]
    # bool is a subclass of int: True must not pass as an int or a float.
    if isinstance(value, bool) and param.base_type != "bool":
        allowed = ()
    if not isinstance(value, allowed):
        raise ValueError(
            f"parameter {param.name!r} expects {param.type}, got {value!r} "
            f"({type(value).__name__})"
        )
    if param.base_type == "float":
        return float(value)
    if param.base_type == "list":
        return list(value)
    return value


def resolve_params(
    declared: dict[str, Param], given: dict[str, Any], *, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Defaults overridden by ``given``, every name and type checked.

    ``ignore`` names declared parameters left out of the result (e.g. ``out_dir``,
    which the runner sets per run).
    """
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"the notebook declares: {', '.join(declared)}"
        )
    out = {}
    for name, p in declared.items():
        if name in ignore:
            continue
        out[name] = check_type(p, given[name]) if name in given else p.default
    return out
