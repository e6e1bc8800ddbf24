"""deploy/*.Dockerfile: sources exist, bases pinned, non-root users, pins match requirements."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from deploy_files import DEPLOY, REPO, Dockerfile

PINNED_TAG = re.compile(r"(\d+\.\d+)|(RELEASE\.\d{4}-\d{2}-\d{2}T)|(@sha256:[0-9a-f]{64})")
HEAVY = {"torch", "simpleitk", "scipy", "highdicom", "matplotlib", "pylibjpeg", "pillow"}
# Excluded from the build context on purpose; anything else under a COPY source must be sent.
BUILD_JUNK = re.compile(r"(__pycache__|\.pyc$|\.egg-info|node_modules|\.db$|\.sqlite$|"
                        r"\.pytest_cache|\.ruff_cache|\.mypy_cache)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def read_pins(path: Path, stop_at: str | None = None) -> dict[str, str]:
    """{normalised name: version} of `name==version` lines, up to a `stop_at` comment line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if stop_at is not None and line.lower() == stop_at:
            break
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        pins[normalise(name)] = version.strip()
    return pins


def runtime_pins() -> dict[str, str]:
    return read_pins(REPO / "requirements.txt", stop_at="# tests")


def copy_sources(dockerfile: Dockerfile) -> list[str]:
    """Build-context sources of every COPY/ADD that does not copy from another stage."""
    sources = []
    for stage in dockerfile.stages:
        for keyword, rest in stage.instructions:
            if keyword not in ("COPY", "ADD"):
                continue
            if rest.startswith("["):
                args = json.loads(rest)
            else:
                args = shlex.split(rest)
            flags = [a for a in args if a.startswith("--")]
            if any(flag.startswith("--from") for flag in flags):
                continue
            paths = [a for a in args if not a.startswith("--")]
            assert len(paths) >= 2, f"{dockerfile.path.name}: {keyword} {rest}"
            sources.extend(paths[:-1])
    return sources


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        patterns.append((negate, re.compile(regex + "$")))
    return patterns


def is_ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def base_images(dockerfile: Dockerfile) -> list[str]:
    stage_names = set()
    bases = []
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        if base not in stage_names:
            bases.append(base)
        if stage.name:
            stage_names.add(stage.name)
    return bases


def stage_arg(dockerfile: Dockerfile, name: str) -> str:
    for stage in dockerfile.stages:
        for keyword, rest in stage.instructions:
            if keyword == "ARG" and rest.partition("=")[0] == name:
                return rest.partition("=")[2]
    return dockerfile.global_args[name]


def test_every_build_uses_the_repository_root_and_an_existing_dockerfile(built_services):
    for name, svc in built_services.items():
        build = svc["build"]
        assert build.get("context") == ".", f"{name}: Dockerfiles expect the repository root"
        assert (REPO / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} missing"


def test_every_dockerfile_is_used_by_compose(built_services, dockerfiles):
    used = {Path(svc["build"]["dockerfile"]).name for svc in built_services.values()}
    assert used == set(dockerfiles), f"unused: {set(dockerfiles) - used}"


def test_copy_sources_exist_and_reach_the_build_context(dockerfiles):
    patterns = dockerignore_patterns()
    problems = []
    for dockerfile in dockerfiles.values():
        for source in copy_sources(dockerfile):
            pattern = source.rstrip("/")
            matches = (list(REPO.glob(pattern)) if any(c in pattern for c in "*?[")
                       else [REPO / pattern])
            if not any(path.exists() for path in matches):
                problems.append(f"{dockerfile.path.name}: COPY source {source} does not exist "
                                "(the image build would fail)")
                continue
            for path in matches:
                relative = path.relative_to(REPO).as_posix()
                if is_ignored(relative, patterns):
                    problems.append(f"{dockerfile.path.name}: {relative} is in .dockerignore")
                for file in (path.rglob("*") if path.is_dir() else []):
                    inner = file.relative_to(REPO).as_posix()
                    if (file.is_file() and is_ignored(inner, patterns)
                            and not BUILD_JUNK.search(inner)):
                        problems.append(f"{dockerfile.path.name}: {inner} is in .dockerignore")
    assert not problems, problems


def test_dockerignore_keeps_secrets_and_local_state_out(dockerfiles):
    patterns = dockerignore_patterns()
    for path in (".env", ".env.production", ".git", ".venv", "var/lungcad.db",
                 "services/frontend/node_modules/x.js", "shared/lungcad/__pycache__/x.pyc"):
        assert is_ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    assert not is_ignored("services/frontend/dist/index.html", patterns)


def test_base_images_are_pinned(dockerfiles):
    problems = []
    for dockerfile in dockerfiles.values():
        for base in base_images(dockerfile):
            tag = base.rsplit("/", 1)[-1].partition(":")[2]
            if "$" in base or not PINNED_TAG.search(tag) or tag in ("latest", "stable"):
                problems.append(f"{dockerfile.path.name}: FROM {base}")
    assert not problems, f"unpinned base images: {problems}"


@pytest.mark.parametrize("name", ["gateway.Dockerfile", "worker-cpu.Dockerfile",
                                  "worker-cuda.Dockerfile", "frontend.Dockerfile"])
def test_final_stage_runs_as_a_non_root_user(name, dockerfiles):
    users = [rest for keyword, rest in dockerfiles[name].final.instructions if keyword == "USER"]
    assert users, f"{name}: the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{name}: final USER is {users[-1]}"


def test_python_images_default_to_a_lungcad_command(dockerfiles):
    for name in ("gateway.Dockerfile", "worker-cpu.Dockerfile", "worker-cuda.Dockerfile"):
        cmds = [rest for keyword, rest in dockerfiles[name].final.instructions if keyword == "CMD"]
        assert cmds and json.loads(cmds[-1])[0] == "lungcad", name


def test_python_version_matches_pyproject(dockerfiles):
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    lower = re.search(r">=\s*(\d+\.\d+)", requires).group(1)
    versions = [dockerfiles["worker-cuda.Dockerfile"].resolve(
        stage_arg(dockerfiles["worker-cuda.Dockerfile"], "PYTHON_VERSION"))]
    for name in ("gateway.Dockerfile", "worker-cpu.Dockerfile"):
        image = dockerfiles[name].global_args["PYTHON_IMAGE"]
        versions.append(image.partition(":")[2].split("-")[0])
    for version in versions:
        assert version.startswith(lower + "."), f"Python {version} vs requires-python {requires}"


def test_torch_version_matches_requirements(dockerfiles):
    torch = read_pins(REPO / "requirements.txt")["torch"]
    for name in ("worker-cpu.Dockerfile", "worker-cuda.Dockerfile"):
        assert stage_arg(dockerfiles[name], "TORCH_VERSION") == torch, name
    assert stage_arg(dockerfiles["worker-cpu.Dockerfile"], "TORCH_INDEX_URL").endswith("/cpu")


def test_cuda_base_image_matches_the_torch_cuda_index(dockerfiles):
    dockerfile = dockerfiles["worker-cuda.Dockerfile"]
    cuda_tag = dockerfile.global_args["CUDA_IMAGE"].partition(":")[2]
    major, minor = re.match(r"(\d+)\.(\d+)", cuda_tag).groups()
    assert stage_arg(dockerfile, "TORCH_CUDA") == f"cu{major}{minor}", cuda_tag
    assert dockerfile.global_args["CUDA_IMAGE"].startswith("nvidia/cuda:")


def test_gateway_requirements_are_the_api_subset_of_requirements_txt():
    runtime = runtime_pins()
    gateway = read_pins(DEPLOY / "requirements-gateway.txt")
    differing = {name: (version, runtime.get(name)) for name, version in gateway.items()
                 if runtime.get(name) != version}
    assert not differing, f"pins differ from requirements.txt: {differing}"
    heavy = {name for name in gateway if any(name.startswith(h) for h in HEAVY)}
    assert not heavy, f"the gateway image must not install {heavy}"
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = {normalise(dep) for dep in declared} - set(gateway)
    assert not missing, f"pyproject dependencies missing from the gateway image: {missing}"


def test_worker_requirements_are_requirements_txt_without_torch_and_test_tools():
    expected = {name: version for name, version in runtime_pins().items() if name != "torch"}
    assert read_pins(DEPLOY / "requirements-worker.txt") == expected


def test_images_install_their_own_requirement_files(dockerfiles):
    expected = {"gateway.Dockerfile": "deploy/requirements-gateway.txt",
                "worker-cpu.Dockerfile": "deploy/requirements-worker.txt",
                "worker-cuda.Dockerfile": "deploy/requirements-worker.txt"}
    for name, requirements in expected.items():
        assert requirements in copy_sources(dockerfiles[name]), name


def test_gateway_image_carries_no_worker_code(dockerfiles):
    sources = copy_sources(dockerfiles["gateway.Dockerfile"])
    worker_code = [s for s in sources if s.rstrip("/") in (".", "services")
                   or fnmatch.fnmatch(s, "services/preprocess*")
                   or fnmatch.fnmatch(s, "services/inference*")]
    assert not worker_code, f"gateway image copies worker code: {worker_code}"


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module loads (imports inside functions are lazy)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def installed_closure(requirements: set[str]) -> set[str]:
    """The requirements plus everything they depend on, as installed here (markers ignored)."""
    seen: set[str] = set()
    pending = list(requirements)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending.extend(normalise(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requires)
    return seen


def test_gateway_image_code_imports_only_what_it_installs():
    gateway = set(read_pins(DEPLOY / "requirements-gateway.txt"))
    available = installed_closure(gateway)
    providers = metadata.packages_distributions()
    problems = []
    for root in ("shared/lungcad", "services/gateway"):
        for path in sorted((REPO / root).rglob("*.py")):
            for name in module_level_imports(path) - set(sys.stdlib_module_names):
                if name.startswith("lungcad"):
                    if name in ("lungcad_preprocess", "lungcad_inference"):
                        problems.append(f"{path.relative_to(REPO)} imports worker code {name}")
                    continue
                dists = {normalise(d) for d in providers.get(name, [name])}
                if not dists & available:
                    problems.append(f"{path.relative_to(REPO)} imports {name} ({dists}), "
                                    "which the gateway image does not install")
    assert not problems, problems
