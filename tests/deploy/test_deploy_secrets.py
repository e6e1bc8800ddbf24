"""Secrets and variables: no defaults, .env.example complete, placeholders refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
from deploy_files import (
    REPO,
    MissingVariable,
    VariableUse,
    command_argv,
    interpolate,
    interpolate_text,
)

from lungcad.settings import PLACEHOLDER_SECRETS, Settings, UnsafeConfigurationError

SECRET_NAME = re.compile(r"PASSWORD|SECRET|_AUTH$|TOKEN|ACCESS_KEY")
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")
URL_PASSWORD = re.compile(r"^[a-z0-9+.-]+://[^:/@]*:(?P<password>[^@]*)@")
REAL_SECRET = "3f9c1e0a7b6d4c2e8f1a9b0c7d6e5f4a3b2c1d0e"  # 40 hex characters, like the docs say


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def required_variables(compose_variables: list[VariableUse]) -> set[str]:
    return {use.name for use in compose_variables if use.required}


def test_env_example_lists_every_compose_variable(compose_variables, env_example):
    missing = sorted({use.name for use in compose_variables} - set(env_example))
    assert not missing, f".env.example lacks {missing}"


def test_env_example_has_no_stray_variables(compose_variables, env_example):
    used = {use.name for use in compose_variables}
    stray = sorted(name for name in set(env_example) - used if not name.startswith("COMPOSE_"))
    assert not stray, f".env.example sets variables the compose file never reads: {stray}"


def test_env_example_shows_the_compose_defaults(compose_variables, env_example):
    for use in compose_variables:
        if use.op in (":-", "-"):
            assert env_example[use.name] == use.arg, (
                f"{use.name}: .env.example says {env_example[use.name]!r}, "
                f"compose defaults to {use.arg!r}"
            )


def test_secret_variables_are_required_everywhere(compose_variables):
    problems = [f"${{{use.name}{use.op}{use.arg}}}" for use in compose_variables
                if SECRET_NAME.search(use.name) and not use.required]
    assert not problems, f"secrets with a default or an optional reference: {problems}"


def test_secret_settings_are_never_literal(compose_raw):
    problems = []
    for name, svc in compose_raw["services"].items():
        for key, value in environment(svc).items():
            if SECRET_NAME.search(key) or key == "REDISCLI_AUTH":
                if not REQUIRED_REFERENCE.fullmatch(value):
                    problems.append(f"{name}.{key} = {value!r}")
            match = URL_PASSWORD.match(value)
            if match and not REQUIRED_REFERENCE.fullmatch(match.group("password")):
                problems.append(f"{name}.{key}: URL password {match.group('password')!r}")
        argv = command_argv(svc.get("command"))
        for flag, value in zip(argv, argv[1:], strict=False):
            if re.search(r"pass|secret", flag) and not REQUIRED_REFERENCE.fullmatch(value):
                problems.append(f"{name}: {flag} {value!r}")
    assert not problems, f"secrets must come from ${{VAR:?message}} variables: {problems}"


def test_lungcad_services_get_their_secret_key_from_the_environment(services):
    for name, svc in services.items():
        if "build" in svc and command_argv(svc.get("command"))[:1] == ["lungcad"]:
            env = environment(svc)
            assert env.get("LUNGCAD_ENV") == "production", name
            for key in ("LUNGCAD_SECRET_KEY", "LUNGCAD_DATABASE_URL", "LUNGCAD_BROKER_URL",
                        "LUNGCAD_S3_SECRET_KEY"):
                assert env.get(key), f"{name} lacks {key}"


def test_no_placeholder_secrets_in_compose_values(compose_raw):
    placeholders = {p for p in PLACEHOLDER_SECRETS if len(p) > 6}
    for name, svc in compose_raw["services"].items():
        for key, value in environment(svc).items():
            literal = REQUIRED_REFERENCE.sub("", value).lower()
            assert not any(p in literal for p in placeholders), f"{name}.{key} = {value!r}"


@pytest.mark.parametrize("variable", ["LUNGCAD_SECRET_KEY", "LUNGCAD_S3_SECRET_KEY",
                                      "POSTGRES_PASSWORD", "REDIS_PASSWORD",
                                      "MINIO_ROOT_PASSWORD", "COMPOSE_PROFILES"])
def test_compose_refuses_to_start_without(variable, compose_raw, compose_variables, env_example):
    assert variable in required_variables(compose_variables)
    env = {k: v for k, v in env_example.items() if k != variable}
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose_raw, env)
    with pytest.raises(MissingVariable, match=variable):
        interpolate(compose_raw, {**env, variable: ""})


def settings_from(env: dict[str, str]) -> Settings:
    values = {key.removeprefix("LUNGCAD_").lower(): value for key, value in env.items()
              if key.startswith("LUNGCAD_")}
    return Settings(_env_file=None, **values)


def test_lungcad_refuses_the_env_example_placeholders(services):
    settings = settings_from(environment(services["gateway"]))
    with pytest.raises(UnsafeConfigurationError) as refused:
        settings.check_safe()
    assert "LUNGCAD_SECRET_KEY" in str(refused.value)
    assert "LUNGCAD_S3_SECRET_KEY" in str(refused.value)


def test_lungcad_accepts_real_secrets(compose_raw, env_example):
    env = {key: REAL_SECRET if value.endswith("changethis") else value
           for key, value in env_example.items()}
    resolved = interpolate(compose_raw, env)
    settings_from(environment(resolved["services"]["gateway"])).check_safe()


def test_env_example_secrets_are_placeholders(compose_variables, env_example):
    secrets = sorted(name for name in required_variables(compose_variables)
                     if SECRET_NAME.search(name) and name != "LUNGCAD_S3_ACCESS_KEY")
    assert secrets
    for name in secrets:
        value = env_example[name].rpartition(":")[2]  # FLOWER_BASIC_AUTH is user:password
        assert value.lower() in PLACEHOLDER_SECRETS, f"{name}={env_example[name]!r} looks real"


@pytest.fixture
def fake_mc(tmp_path):
    log = tmp_path / "mc.log"
    script = tmp_path / "bin" / "mc"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    return script.parent, log


def run_minio_init(fake_mc, services, **overrides):
    bin_dir, log = fake_mc
    env = {**environment(services["minio-init"]), **overrides,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(REPO / "deploy/minio/init.sh")], env=env,
                            capture_output=True, text=True, timeout=20)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_minio_init_refuses_placeholder_credentials(fake_mc, services):
    result, calls = run_minio_init(fake_mc, services)
    assert result.returncode != 0
    assert "placeholder" in result.stderr
    assert calls == [], "refused before touching MinIO"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_minio_init_creates_bucket_policy_and_account(fake_mc, services):
    result, calls = run_minio_init(fake_mc, services, MINIO_ROOT_PASSWORD=REAL_SECRET,
                                   LUNGCAD_S3_SECRET_KEY=REAL_SECRET[::-1])
    assert result.returncode == 0, result.stderr
    bucket = environment(services["minio-init"])["LUNGCAD_S3_BUCKET"]
    joined = "\n".join(calls)
    assert f"mb --ignore-existing lungcad/{bucket}" in joined
    assert "admin policy create lungcad lungcad-bucket-rw" in joined
    assert f"admin user add lungcad lungcad {REAL_SECRET[::-1]}" in joined
    assert "admin policy attach lungcad lungcad-bucket-rw --user lungcad" in joined


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize(("auth", "allowed"), [("admin:changethis", False), ("", False),
                                               (f"admin:{REAL_SECRET}", True)])
def test_flower_refuses_placeholder_basic_auth(auth, allowed, services, tmp_path):
    celery = tmp_path / "celery"
    celery.write_text("#!/bin/sh\nexit 0\n")
    celery.chmod(0o755)
    script = command_argv(services["flower"]["command"])[0]
    env = {"FLOWER_BASIC_AUTH": auth, "CELERY_BROKER_URL": "redis://x",
           "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                            timeout=20)
    assert (result.returncode == 0) == allowed, result.stderr


def test_dollar_escapes_reach_the_shell_as_single_dollars(services):
    assert "$HOSTNAME" in services["preprocess"]["healthcheck"]["test"][1]
    assert interpolate_text("a$$b", {}) == "a$b"
