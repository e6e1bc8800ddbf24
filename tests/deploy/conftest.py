"""Fixtures for the deployment checks: the parsed compose model, .env.example and Dockerfiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from deploy_files import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    REPO,
    Dockerfile,
    VariableUse,
    interpolate,
    parse_dockerfile,
    read_env_file,
    strings_in,
    variable_uses,
)


@pytest.fixture(scope="session")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="session")
def compose_raw(compose_text: str) -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and `<<` merges applied), before interpolation."""
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="session")
def compose_variables(compose_raw: dict[str, Any]) -> list[VariableUse]:
    """Every variable reference in the compose file's values."""
    return [use for text in strings_in(compose_raw) for use in variable_uses(text)]


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose model as `docker compose config` sees it with .env copied from the example."""
    return interpolate(compose_raw, env_example)


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="session")
def built_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run images built from this repository (the LungCAD processes)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


@pytest.fixture(scope="session")
def one_shot_services(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait on with `service_completed_successfully`."""
    return {
        target
        for svc in services.values()
        for target, spec in (svc.get("depends_on") or {}).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }


@pytest.fixture(scope="session")
def dockerfile_for() -> Callable[[dict[str, Any]], Dockerfile]:
    def load(build: dict[str, Any]) -> Dockerfile:
        context = REPO / build.get("context", ".")
        return parse_dockerfile(context / build.get("dockerfile", "Dockerfile"))

    return load


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, Dockerfile]:
    return {path.name: parse_dockerfile(path) for path in sorted(DEPLOY.glob("*.Dockerfile"))}
