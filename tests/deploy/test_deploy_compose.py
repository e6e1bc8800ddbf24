"""docker-compose.yml: images, health, start order, restarts, volumes, ports, profiles, queues."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from deploy_files import REPO, command_argv

# Third-party image tags must name an exact release: a version number or a dated release tag.
PINNED_TAG = re.compile(r"(\d+\.\d+)|(RELEASE\.\d{4}-\d{2}-\d{2}T)")
FLOATING_TAGS = {"latest", "stable", "edge", "mainline", "lts", "current"}

# Long-running services allowed to have no healthcheck, and why. Nothing waits on them.
NO_HEALTHCHECK = {
    "relay": "no HTTP port or Celery node to probe; crashes are handled by its restart policy",
    "flower": "optional monitor behind a profile; nothing depends on it",
}

# Where each stateful service keeps its data inside the container.
STATE_PATHS = {"postgres": "/var/lib/postgresql/data", "redis": "/data", "minio": "/data"}

# Services whose port faces the network, and why (every other one publishes on loopback only).
PUBLIC_PORTS = {
    "frontend": "the dashboard and /v1 API, behind nginx",
    "dicom": "the DICOM listener: the PACS and scanners send to it (firewalled to them)",
}

LONG_RUNNING_RESTARTS = {"always", "unless-stopped", "on-failure"}


def image_tag(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.partition(":")[2] if ":" in name else ""


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for each volume entry, short or long syntax."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            parts = str(entry).split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, container_port) for each `ports` entry."""
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append((str(entry.get("host_ip", "")), str(entry.get("published", "")),
                          str(entry["target"])))
            continue
        parts = str(entry).split(":")
        if len(parts) == 3:
            ports.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            ports.append(("", parts[0], parts[1]))
        else:
            ports.append(("", "", parts[0]))
    return ports


def active(services: dict[str, dict[str, Any]], profiles: set[str]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items()
            if not svc.get("profiles") or profiles & set(svc["profiles"])}


def queues_consumed(service: dict[str, Any]) -> set[str]:
    argv = command_argv(service.get("command"))
    if argv[:2] != ["lungcad", "worker"] or "--queues" not in argv:
        return set()
    return set(argv[argv.index("--queues") + 1].split(","))


def test_every_service_has_an_image_or_a_build(services):
    missing = [name for name, svc in services.items() if "image" not in svc and "build" not in svc]
    assert not missing, f"services with neither image nor build: {missing}"


def test_third_party_images_are_pinned_to_a_release(services):
    problems = []
    for name, svc in services.items():
        if "build" in svc:
            continue
        tag = image_tag(svc["image"])
        if "@sha256:" in svc["image"]:
            continue
        if not tag or tag.lower() in FLOATING_TAGS or not PINNED_TAG.search(tag):
            problems.append(f"{name}: {svc['image']}")
    assert not problems, f"images without an exact release tag: {problems}"


def test_built_images_are_tagged_with_the_project_version(built_services):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in built_services.items():
        assert "image" in svc, f"{name}: give the built image a name so services can share it"
        assert image_tag(svc["image"]) == version, (
            f"{name}: image {svc['image']} should default to the pyproject version {version} "
            "(LUNGCAD_VERSION)"
        )


def test_services_sharing_an_image_build_it_the_same_way(built_services):
    builds: dict[str, Any] = {}
    for name, svc in built_services.items():
        first = builds.setdefault(svc["image"], (name, svc["build"]))
        assert first[1] == svc["build"], (
            f"{name} and {first[0]} tag {svc['image']} from different builds"
        )


def test_long_running_services_have_healthchecks(services, one_shot_services):
    problems = []
    for name, svc in services.items():
        if name in one_shot_services or name in NO_HEALTHCHECK:
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        if not test or svc["healthcheck"].get("disable"):
            problems.append(f"{name}: no healthcheck")
        elif isinstance(test, list) and test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: healthcheck test must start with CMD or CMD-SHELL")
    assert not problems, problems


def test_healthcheck_exemptions_are_still_needed(services):
    stale = [name for name in NO_HEALTHCHECK if name not in services
             or (services[name].get("healthcheck") or {}).get("test")]
    assert not stale, f"drop these from NO_HEALTHCHECK: {stale}"


def test_depends_on_targets_exist_with_conditions(services, one_shot_services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    problems = []
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on needs the long form with a condition")
            continue
        for target, spec in depends.items():
            if target not in services:
                problems.append(f"{name} -> {target}: no such service")
                continue
            condition = (spec or {}).get("condition")
            if condition not in conditions:
                problems.append(f"{name} -> {target}: condition {condition!r}")
            if condition == "service_healthy" and not services[target].get("healthcheck"):
                problems.append(f"{name} -> {target}: waits for health that is never checked")
            target_profiles = set(services[target].get("profiles") or [])
            own_profiles = set(svc.get("profiles") or [])
            if target_profiles and not (own_profiles and own_profiles <= target_profiles):
                problems.append(f"{name} -> {target}: target only runs under {target_profiles}")
    assert not problems, problems
    assert {"migrate", "minio-init"} <= one_shot_services


def test_lungcad_processes_wait_for_migrations_and_backing_services(built_services):
    for name, svc in built_services.items():
        argv = command_argv(svc.get("command"))
        if argv[:1] != ["lungcad"]:
            continue
        depends = svc.get("depends_on") or {}
        if argv[1] == "migrate":
            assert depends.get("postgres", {}).get("condition") == "service_healthy", name
            continue
        expected = {"postgres": "service_healthy", "redis": "service_healthy",
                    "migrate": "service_completed_successfully",
                    "minio-init": "service_completed_successfully"}
        actual = {target: (depends.get(target) or {}).get("condition") for target in expected}
        assert actual == expected, f"{name} starts before its dependencies: {actual}"


def test_frontend_waits_for_a_healthy_gateway(services):
    assert services["frontend"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_restart_policies(services, one_shot_services):
    problems = []
    for name, svc in services.items():
        restart = str(svc.get("restart", "no"))
        if name in one_shot_services:
            if restart not in ("no", "on-failure") and not restart.startswith("on-failure:"):
                problems.append(f"{name}: one-shot with restart {restart!r} would rerun forever")
        elif restart not in LONG_RUNNING_RESTARTS:
            problems.append(f"{name}: restart {restart!r}")
    assert not problems, problems


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    problems = []
    for name, svc in services.items():
        for source, _target in volume_mounts(svc):
            if not source:
                problems.append(f"{name}: anonymous volume (state would be lost on recreate)")
            elif source.startswith((".", "/", "~")):
                if not (REPO / source).exists():
                    problems.append(f"{name}: bind mount source {source} does not exist")
            else:
                used.add(source)
                if source not in declared:
                    problems.append(f"{name}: volume {source} is not declared")
    assert not problems, problems
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_stateful_services_keep_data_in_named_volumes(services):
    for name, path in STATE_PATHS.items():
        mounts = dict((target, source) for source, target in volume_mounts(services[name]))
        source = mounts.get(path, "")
        assert source and not source.startswith((".", "/")), (
            f"{name}: {path} must be a named volume, found {source!r}"
        )


def test_redis_keeps_tasks(services):
    argv = command_argv(services["redis"]["command"])
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


def test_gateway_and_frontend_publish_ports_and_nothing_else_is_exposed(services):
    gateway = published_ports(services["gateway"])
    frontend = published_ports(services["frontend"])
    assert any(container == "8000" for _ip, _port, container in gateway), gateway
    assert any(container == "8080" for _ip, _port, container in frontend), frontend
    for name, svc in services.items():
        ports = published_ports(svc)
        if name in ("postgres", "redis", "minio"):
            assert not ports, f"{name} must not publish ports: {ports}"
        if name not in PUBLIC_PORTS:
            for host_ip, _port, _container in ports:
                assert host_ip == "127.0.0.1", f"{name} publishes beyond loopback: {ports}"


def test_workers_can_be_scaled(services):
    for name, svc in services.items():
        if queues_consumed(svc):
            assert "container_name" not in svc, f"{name}: container_name prevents --scale"
            assert not svc.get("ports"), f"{name}: fixed host ports prevent --scale"


def test_each_profile_runs_one_consumer_per_queue(services):
    from lungcad.celery_app import QUEUE_INFERENCE, QUEUE_PREPROCESS

    for profiles in ({"gpu"}, {"cpu"}, {"gpu", "flower"}):
        running = active(services, profiles)
        consumers: dict[str, list[str]] = {}
        for name, svc in running.items():
            for queue in queues_consumed(svc):
                consumers.setdefault(queue, []).append(name)
        assert set(consumers) == {QUEUE_PREPROCESS, QUEUE_INFERENCE}, (profiles, consumers)
        assert len(consumers[QUEUE_INFERENCE]) == 1, (
            f"profiles {profiles}: inference consumed by {consumers[QUEUE_INFERENCE]}"
        )


def test_gpu_inference_reserves_an_nvidia_gpu_and_cpu_variant_does_not(services):
    gpu, cpu = services["inference"], services["inference-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "deploy" not in cpu
    assert gpu["build"]["dockerfile"] == "deploy/worker-cuda.Dockerfile"
    assert cpu["build"]["dockerfile"] == "deploy/worker-cpu.Dockerfile"
    assert queues_consumed(gpu) == queues_consumed(cpu) == {"inference"}


def test_compose_profiles_default_picks_exactly_one_inference_worker(env_example):
    profiles = set(env_example["COMPOSE_PROFILES"].split(","))
    assert len(profiles & {"gpu", "cpu"}) == 1, profiles
