"""Every command the README shows is run: ``make test`` by CI, ``make demo`` here, the ``lungcad``
commands through the CLI's own parser (their behaviour is tested in tests/test_cli.py and the
service tests), and the curl examples against a live gateway."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import zipfile
from pathlib import Path

from lungcad.cli import build_parser
from tests.conftest import ROOT, Gateway, free_port
from tests.factories import ct_series
from tests.test_cli import NOISE

README = ROOT / "README.md"


def commands(language: str = "bash") -> list[str]:
    """Shell commands in the README's fenced blocks (comments dropped, continuations joined)."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_the_readme_shows_the_two_commands() -> None:
    found = commands()
    assert "make demo" in found and "make test" in found
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec make test")


def test_every_lungcad_command_parses() -> None:
    lines = [c for c in commands() if re.match(r"^(\.venv/bin/)?lungcad\b", c)]
    assert len(lines) >= 3
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        args = parser.parse_args(argv)
        assert callable(args.func), line


def test_the_curl_examples_run_against_a_live_gateway(gateway: Gateway, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in ct_series(tmp_path / "s", n=3):
            zf.write(path, f"study/{path.name}")
    (tmp_path / "study.zip").write_bytes(buffer.getvalue())
    curls = [c for c in commands() if c.startswith("curl ")]
    assert len(curls) >= 6
    env = {**os.environ, "KEY": gateway.key}
    expected = {"POST": 202, "DELETE": 200}
    for line in curls:
        line = line.replace("http://127.0.0.1:8000", gateway.url)
        method = "POST" if "-X POST" in line else "DELETE" if "-X DELETE" in line else "GET"
        result = subprocess.run(["bash", "-c", f"{line} -o body.json -w '%{{http_code}}'"],  # noqa: S603, S607
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, (line, result.stderr)
        status = int(result.stdout.strip())
        if "/result" in line:
            assert status == 409, line  # the job has not run: no worker in this test
        else:
            assert status == expected.get(method, 200), (line, status)
        if method == "POST":
            env["ID"] = __import__("json").loads((tmp_path / "body.json").read_text())["id"]


def test_make_demo_runs_the_demo_job(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGCAD_")}
    env.update({"LUNGCAD_DATA_DIR": str(tmp_path / "demo"), "LUNGCAD_ENV": "development"})
    result = subprocess.run(["make", "--no-print-directory", "demo",  # noqa: S603, S607
                             f"DEMO_ARGS=--once --port {port}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert "Submitted job" in output, output[-3000:]
    for name, text in NOISE.items():  # the full log is in <data dir>/demo.log (test_cli.py)
        assert text not in output, (name, output[-3000:])
    weights = ROOT / "services/inference/lungcad_inference/weights"
    if any(weights.glob("detector*")):
        assert result.returncode == 0, output[-3000:]
        assert "schema 1.0" in output and "API key:" in output
    else:
        assert "The job ended failed" in output  # no model to run without shipped weights
