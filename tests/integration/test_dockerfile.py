"""The Dockerfile and .dockerignore, checked without a container engine: a small parser reads the
instructions (comments, line continuations, exec and shell forms, stages, global ``ARG`` defaults in ``FROM``) and
the tests assert the properties the image must have: one pinned base for every stage, numeric non-root user, no
build tools in the final stage, ``referee`` as the entrypoint, and a build context holding only what the build
copies. tests/integration/test_image.py builds and runs the image for real."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
VALUES = REPO / "helm" / "referee" / "values.yaml"

PINNED = re.compile(r"^(?P<image>[^@\s]+)@sha256:[a-f0-9]{64}$")
TOOLCHAIN = re.compile(
    r"\b(gcc|g\+\+|cc|c\+\+|clang|make|cmake|build-essential|binutils|rustc|cargo|gfortran|"
    r"[a-z0-9.+-]+-dev|python3?-dev|libc6-dev|musl-dev|pkg-config|autoconf|automake|libtool)\b"
)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, RUN), else None."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def flags(self) -> tuple[dict[str, str], list[str]]:
        """``--flag=value`` options and the remaining words (COPY, ADD, FROM, RUN --mount=…)."""
        words = shlex.split(self.args, posix=True)
        options: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, val = words.pop(0)[2:].partition("=")
            options[name] = val
        return options, words


@dataclass
class Stage:
    base: str
    name: str | None
    index: int
    instructions: list[Instruction] = field(default_factory=list)
    base_as_written: str = ""

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions in order (keywords upper-cased, continuations joined, comments dropped) and stages."""
    instructions: list[Instruction] = []
    escape = "\\"
    lines = text.splitlines()
    i = 0
    in_directives = True
    while i < len(lines):
        raw = lines[i]
        start = i + 1
        i += 1
        stripped = raw.strip()
        if in_directives:
            directive = re.match(r"^#\s*(\w+)\s*=\s*(\S+)\s*$", stripped)
            if directive:
                if directive.group(1).lower() == "escape":
                    escape = directive.group(2)
                continue
            in_directives = False
        if not stripped or stripped.startswith("#"):
            continue
        parts = [raw.rstrip()]
        continued = parts[-1].endswith(escape)
        while continued and i < len(lines):
            if parts[-1].endswith(escape):
                parts[-1] = parts[-1][: -len(escape)]
            nxt = lines[i].rstrip()
            i += 1
            if not nxt.strip() or nxt.strip().startswith("#"):  # blank and comment lines inside a continuation
                continue
            parts.append(nxt)
            continued = nxt.endswith(escape)
        joined = " ".join(p.strip() for p in parts if p.strip())
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            global_args[name.strip()] = default.strip()
        elif instruction.keyword == "FROM":
            _, words = instruction.flags()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), instruction
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            stages.append(Stage(base, name, len(stages), base_as_written=words[0]))
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return instructions, stages


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent directories) decides."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip().rstrip("/").removeprefix("./").removeprefix("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        regex = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def read_dockerignore() -> list[str]:
    return [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _, parsed = parse_dockerfile(DOCKERFILE.read_text())
    return parsed


# -- the parser itself ---------------------------------------------------------------------------------------


def test_parser_handles_continuations_comments_and_forms() -> None:
    text = """# syntax=docker/dockerfile:1
# escape=\\
ARG BASE=python
FROM python:3.11@sha256:%s AS build
RUN apt-get update \\
 # a comment inside the continuation
 && apt-get install -y gcc
from scratch
copy --from=build --chown=1:1 /a /b
USER 10:10
ENTRYPOINT ["x", "y"]
CMD serve --config /c
""" % ("a" * 64)
    instructions, parsed = parse_dockerfile(text)
    assert [i.keyword for i in instructions] == ["ARG", "FROM", "RUN", "FROM", "COPY", "USER", "ENTRYPOINT", "CMD"]
    assert [(s.base, s.name) for s in parsed] == [(f"python:3.11@sha256:{'a' * 64}", "build"), ("scratch", None)]
    _, with_arg = parse_dockerfile(
        "ARG BASE=python:3.11@sha256:%s\nFROM ${BASE} AS b\nARG X=1\nFROM $BASE" % ("b" * 64)
    )
    assert [s.base for s in with_arg] == [f"python:3.11@sha256:{'b' * 64}"] * 2
    assert [s.base_as_written for s in with_arg] == ["${BASE}", "$BASE"]
    assert with_arg[0].all("ARG")[0].args == "X=1"
    run = parsed[0].all("RUN")[0]
    assert run.args == "apt-get update && apt-get install -y gcc" and run.line == 5
    assert TOOLCHAIN.search(run.args)
    assert parsed[1].all("COPY")[0].flags() == ({"from": "build", "chown": "1:1"}, ["/a", "/b"])
    assert parsed[1].all("ENTRYPOINT")[0].exec_form() == ["x", "y"]
    assert parsed[1].all("CMD")[0].exec_form() is None
    assert not TOOLCHAIN.search("pip install referee cachetools && python -m venv /opt/referee")


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!provider/", "provider/**/__pycache__", "!README.md"]
    assert dockerignore_excludes(patterns, ".venv/bin/python")
    assert dockerignore_excludes(patterns, "tests/conftest.py")
    assert not dockerignore_excludes(patterns, "provider/cli.py")
    assert not dockerignore_excludes(patterns, "provider/server/app.py")
    assert dockerignore_excludes(patterns, "provider/server/__pycache__/app.cpython-311.pyc")
    assert not dockerignore_excludes(patterns, "README.md")
    assert not dockerignore_excludes(["docs"], "docs2/x")


# -- the Dockerfile ------------------------------------------------------------------------------------------


def test_multi_stage_with_every_base_pinned_by_digest(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage build expected"
    for stage in stages:
        match = PINNED.match(stage.base)
        assert match, f"stage {stage.index} FROM {stage.base} is not pinned by digest"
    final = stages[-1]
    image = PINNED.match(final.base)
    assert image is not None and image.group("image").startswith("python:3.11-slim")
    # the virtual environment copied from the builder needs the builder's interpreter: one BASE argument for both
    builder = next(s for s in stages if s.name and any(c.flags()[0].get("from") == s.name for c in final.all("COPY")))
    assert builder.base == final.base
    assert builder.base_as_written == final.base_as_written == "${BASE}"


def test_final_stage_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric non-root UID required"
    assert gid == "" or (gid.isdigit() and int(gid) != 0)
    assert int(uid) == 65532
    # nothing runs after USER as another user, and the chart runs the pod as the same UID
    last_user_at = final.instructions.index(users[-1])
    assert all(i.keyword != "RUN" for i in final.instructions[last_user_at:])
    values = yaml.safe_load(VALUES.read_text())
    assert values["podSecurity"]["runAsUser"] == int(uid)


def test_no_build_tools_in_the_final_stage(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert not TOOLCHAIN.search(run.args), f"line {run.line}: build tooling in the final stage: {run.args}"
        assert not re.search(r"\b(apt-get|apt|apk|dnf|yum)\b.*\binstall\b", run.args), run.args
    for instruction in final.all("COPY") + final.all("ADD"):
        options, words = instruction.flags()
        sources = words[:-1]
        assert options.get("from"), f"line {instruction.line}: the final stage copies only build results"
        assert sources == ["/opt/referee"], f"line {instruction.line}: copies {sources}"
    # the builder installs wheels only, so it never compiles either
    builder_runs = " ".join(r.args for s in stages[:-1] for r in s.all("RUN"))
    assert "--only-binary=:all:" in builder_runs
    assert not TOOLCHAIN.search(builder_runs)


def test_entrypoint_is_referee_serve(stages: list[Stage]) -> None:
    final = stages[-1]
    entrypoints = final.all("ENTRYPOINT")
    assert entrypoints and entrypoints[-1].exec_form() == ["referee"]
    cmds = final.all("CMD")
    assert cmds and cmds[-1].exec_form() == ["serve", "--config", "/etc/referee/referee.yaml"]
    exposed = {int(p.split("/")[0]) for e in final.all("EXPOSE") for p in e.args.split()}
    values = yaml.safe_load(VALUES.read_text())
    assert exposed == {values["ports"]["provider"], values["ports"]["health"]}
    env = " ".join(e.args for e in final.all("ENV"))
    assert "/opt/referee/bin" in env and "PYTHONDONTWRITEBYTECODE=1" in env


def test_build_context_holds_only_what_the_build_copies(stages: list[Stage]) -> None:
    patterns = read_dockerignore()
    copied: list[str] = []
    for stage in stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            options, words = instruction.flags()
            if not options.get("from"):
                copied.extend(w.rstrip("/") for w in words[:-1])
    assert copied
    for source in copied:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [f.relative_to(REPO).as_posix() for f in path.rglob("*") if f.is_file()] if path.is_dir() else [source]
        assert any(not dockerignore_excludes(patterns, f) for f in files), f"COPY {source}: excluded by .dockerignore"
    assert "wheelhouse" in copied
    assert not dockerignore_excludes(patterns, "wheelhouse/aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.whl")
    for path in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "helm/referee/values.yaml", "bench/x.py"):
        assert dockerignore_excludes(patterns, path), f"{path} would be sent to the builder"
    assert dockerignore_excludes(patterns, "wheelhouse/notes.txt")
    for path in fnmatch.filter([p.relative_to(REPO).as_posix() for p in (REPO / "provider").rglob("*.py")], "*"):
        assert not dockerignore_excludes(patterns, path), path
