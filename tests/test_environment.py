"""environment.yml must agree with pyproject.toml, the one source of dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
# Conda packages that are tooling, not Python requirements of the project.
CONDA_TOOLING = {"python", "pip"}


def load_pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def load_environment() -> dict:
    with open(ROOT / "environment.yml") as f:
        return yaml.safe_load(f)


def split_environment(env: dict) -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of an environment.yml; the pip section must come last."""
    conda, pip, pip_index = [], None, None
    for i, dep in enumerate(env["dependencies"]):
        if isinstance(dep, dict):
            if set(dep) != {"pip"}:
                raise ValueError(f"unexpected mapping in dependencies: {dep}")
            pip, pip_index = dep["pip"], i
        else:
            conda.append(str(dep))
    if pip is None:
        raise ValueError("environment.yml has no pip section")
    if pip_index != len(env["dependencies"]) - 1:
        raise ValueError("the pip section of environment.yml must come last")
    return conda, pip


def conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """Parse a conda match spec such as ``python=3.11``, ``numpy>=1.26`` or ``h5py 3.10.*``.

    Conda's ``=X`` means ``X.*``; ``==X`` is exact. Build strings are not supported.
    """
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    if not m:
        raise ValueError(f"cannot parse conda spec {spec!r}")
    name, version = m.group(1), m.group(2).replace(" ", "")
    if not version:
        return name, SpecifierSet()
    parts = []
    for part in version.split(","):
        if re.fullmatch(r"=?[0-9][^=<>!~]*", part):  # "=3.11", "3.11.*", "3.11"
            v = part.lstrip("=")
            parts.append(f"=={v}" if v.endswith("*") else f"=={v}.*")
        else:
            parts.append(part)
    return name, SpecifierSet(",".join(parts))


def boundary_versions(spec: SpecifierSet) -> list[Version]:
    """Versions at and right around each specifier's boundary (candidates for an overlap)."""
    out = []
    for s in spec:
        v = Version(s.version.replace(".*", ""))
        rel = list(v.release)
        out += [v, Version(".".join(map(str, rel + [0, 1]))),
                Version(".".join(map(str, rel[:-1] + [rel[-1] + 1])))]
    return out


def specs_overlap(a: SpecifierSet, b: SpecifierSet) -> bool:
    """True when some version satisfies both (checked at the specifiers' boundaries)."""
    if not a or not b:
        return True
    return any(v in a and v in b for v in boundary_versions(a) + boundary_versions(b))


def pyproject_requirements(pyproject: dict) -> dict[str, Requirement]:
    project = pyproject["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}


def conda_conflicts(conda: list[str], reqs: dict[str, Requirement]) -> list[str]:
    """Conda packages with no compatible requirement in pyproject (empty list = agreement)."""
    problems = []
    for spec in conda:
        name, version = conda_spec(spec)
        if name in CONDA_TOOLING:
            continue
        req = reqs.get(canonicalize_name(name))
        if req is None:
            problems.append(f"{spec}: not a requirement in pyproject.toml")
        elif not specs_overlap(version, req.specifier):
            problems.append(f"{spec}: incompatible with pyproject's {req}")
    return problems


# ---------------------------------------------------------------- the real files


def test_channels_are_conda_forge_only():
    env = load_environment()
    assert [c for c in env["channels"] if c != "nodefaults"] == ["conda-forge"]


def test_python_version_within_requires_python():
    conda, _ = split_environment(load_environment())
    pythons = [conda_spec(s)[1] for s in conda if conda_spec(s)[0] == "python"]
    assert len(pythons) == 1, f"expected exactly one python spec, got {conda}"
    assert str(pythons[0]) == "==3.11.*"
    requires = SpecifierSet(load_pyproject()["project"]["requires-python"])
    assert Version("3.11.0") in requires, f"python 3.11 is outside requires-python {requires}"


def test_pip_section_installs_project_with_dev_extra():
    _, pip = split_environment(load_environment())
    assert pip == ["-e .[dev]"]
    assert "dev" in load_pyproject()["project"]["optional-dependencies"]


def test_conda_packages_agree_with_pyproject():
    conda, _ = split_environment(load_environment())
    assert conda_conflicts(conda, pyproject_requirements(load_pyproject())) == []


def test_torch_family_pinned_together():
    reqs = pyproject_requirements(load_pyproject())
    pins = {name: str(reqs[name].specifier) for name in ("torch", "torchaudio", "torchvision")}
    assert pins == {"torch": "==2.11.0", "torchaudio": "==2.11.0", "torchvision": "==0.26.0"}


# ---------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("python=3.11", "==3.11.*"),
        ("numpy>=1.26", ">=1.26"),
        ("h5py 3.10.*", "==3.10.*"),
        ("torch==2.11.0", "==2.11.0"),
        ("pandas>=2.1,<3", "<3,>=2.1"),
        ("pip", ""),
    ],
)
def test_conda_spec_parsing(spec, expected):
    assert str(conda_spec(spec)[1]) == expected


def test_checker_flags_conflicts_and_accepts_agreement():
    reqs = {canonicalize_name(r.name): r for r in map(Requirement, [
        "torch==2.11.0", "h5py>=3.10", "pandas>=2.1", "scikit-learn>=1.4"])}
    ok = ["python=3.11", "pip", "h5py>=3.12", "pandas 2.2.*", "torch=2.11", "scikit_learn"]
    assert conda_conflicts(ok, reqs) == []
    bad = ["torch=2.10", "h5py<3.9", "matplotlib"]
    problems = conda_conflicts(bad, reqs)
    assert len(problems) == 3
    assert any("torch=2.10" in p for p in problems)
    assert any("matplotlib" in p and "not a requirement" in p for p in problems)


def test_pip_section_must_come_last():
    with pytest.raises(ValueError, match="last"):
        split_environment({"dependencies": ["python=3.11", {"pip": ["-e .[dev]"]}, "pip"]})
