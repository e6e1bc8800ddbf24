"""Every LungCAD container runs a `lungcad` subcommand of the CLI contract, with known flags."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import REPO, command_argv

from lungcad import cli

# The CLI contract the deployment relies on: subcommand -> flags the compose file may pass.
CONTRACT: dict[tuple[str, ...], set[str]] = {
    ("migrate",): set(),
    ("serve",): {"--host", "--port", "--no-workers", "--no-relay"},
    ("relay",): set(),
    ("dicom-listen",): {"--host", "--port"},
    ("worker",): {"--queues", "--concurrency"},
    ("admin", "create-key"): {"--tenant"},
}
VALUE_FLAGS = {"--host", "--port", "--queues", "--concurrency", "--tenant"}
QUEUES = {"preprocess", "inference"}
CELERY_APP = re.compile(r"celery -A (?P<module>[\w.]+):(?P<attr>\w+) ")


def split_command(argv: list[str]) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """(subcommand path, {flag: value}) for a `lungcad ...` argv, checked against CONTRACT."""
    assert argv[:1] == ["lungcad"], f"not a lungcad command: {argv}"
    rest = argv[1:]
    sub = next((s for s in sorted(CONTRACT, key=len, reverse=True)
                if tuple(rest[: len(s)]) == s), None)
    assert sub is not None, f"`lungcad {' '.join(rest)}`: unknown subcommand"
    flags: dict[str, str | None] = {}
    args = iter(rest[len(sub):])
    for arg in args:
        assert arg.startswith("--"), f"unexpected positional {arg!r} in {argv}"
        flags[arg] = next(args) if arg in VALUE_FLAGS else None
    unknown = set(flags) - CONTRACT[sub]
    assert not unknown, f"`lungcad {' '.join(sub)}` has no {sorted(unknown)}"
    return sub, flags


def lungcad_commands(services) -> dict[str, list[str]]:
    return {name: command_argv(svc.get("command")) for name, svc in services.items()
            if "build" in svc and not svc["build"]["dockerfile"].endswith("frontend.Dockerfile")}


def test_lungcad_services_run_contract_subcommands(services):
    commands = lungcad_commands(services)
    assert set(commands) >= {"migrate", "gateway", "relay", "preprocess", "inference",
                             "inference-cpu"}
    for name, argv in commands.items():
        sub, flags = split_command(argv)
        if "--port" in flags:
            assert flags["--port"].isdigit(), name
        if "--concurrency" in flags:
            assert int(flags["--concurrency"]) >= 1, name
        if sub == ("worker",):
            queues = set((flags.get("--queues") or "").split(","))
            assert queues and queues <= QUEUES, f"{name}: queues {queues}"


def test_gateway_leaves_workers_and_relay_to_their_own_services(services):
    sub, flags = split_command(command_argv(services["gateway"]["command"]))
    assert sub == ("serve",) and {"--no-workers", "--no-relay"} <= set(flags)
    assert flags["--host"] == "0.0.0.0"
    relays = [name for name, argv in lungcad_commands(services).items() if argv[1] == "relay"]
    assert relays == ["relay"] and not services["relay"].get("profiles")
    migrations = [name for name, argv in lungcad_commands(services).items()
                  if argv[1] == "migrate"]
    assert migrations == ["migrate"]


def test_dockerfile_default_commands_follow_the_contract(dockerfiles):
    for name in ("gateway.Dockerfile", "worker-cpu.Dockerfile", "worker-cuda.Dockerfile"):
        cmd = [rest for keyword, rest in dockerfiles[name].final.instructions if keyword == "CMD"]
        split_command(json.loads(cmd[-1]))


def test_worker_healthchecks_ping_the_celery_app_that_exists(services):
    checked = 0
    for name, svc in services.items():
        test = " ".join(command_argv((svc.get("healthcheck") or {}).get("test")))
        match = CELERY_APP.search(test)
        if not match:
            continue
        checked += 1
        module_path = REPO / "shared" / Path(*match["module"].split(".")).with_suffix(".py")
        assert module_path.is_file(), f"{name}: {match['module']} not found"
        tree = ast.parse(module_path.read_text())
        names = {target.id for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
        assert match["attr"] in names, f"{name}: {match['module']} defines no {match['attr']}"
    assert checked >= 3


def test_worker_healthchecks_ping_the_node_name_the_cli_gives(services):
    for name, svc in services.items():
        argv = command_argv(svc.get("command"))
        if argv[:2] != ["lungcad", "worker"]:
            continue
        _sub, flags = split_command(argv)
        worker_argv = cli._worker_argv(flags["--queues"], 1, None)
        node = worker_argv[worker_argv.index("-n") + 1].replace("%h", "$HOSTNAME")
        test = " ".join(command_argv(svc["healthcheck"]["test"]))
        assert f"-d {node} " in test, f"{name}: healthcheck must ping {node}: {test}"


def lungcad_executable() -> Path | None:
    candidate = Path(sys.executable).with_name("lungcad")
    return candidate if candidate.exists() else None


@pytest.fixture(scope="module")
def help_results(services):
    """`lungcad <sub> --help` for every subcommand in CONTRACT, run concurrently (fast)."""
    executable = lungcad_executable()
    assert executable is not None, "the `lungcad` entry point is not installed (make install)"
    running = {sub: subprocess.Popen([str(executable), *sub, "--help"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=REPO)
               for sub in CONTRACT}
    results = {}
    for sub, process in running.items():
        output, _ = process.communicate(timeout=60)
        results[sub] = (process.returncode, output)
    return results


@pytest.mark.parametrize("sub", list(CONTRACT), ids=" ".join)
def test_cli_subcommand_help_lists_the_flags_compose_uses(sub, help_results, services):
    returncode, output = help_results[sub]
    assert returncode == 0, f"`lungcad {' '.join(sub)} --help` exited {returncode}:\n{output}"
    used = set()
    for argv in lungcad_commands(services).values():
        argv_sub, flags = split_command(argv)
        if argv_sub == sub:
            used |= set(flags)
    missing = sorted(flag for flag in used | CONTRACT[sub] if flag not in output)
    assert not missing, f"`lungcad {' '.join(sub)} --help` does not mention {missing}"
