"""deploy/nginx.conf: API proxy to the gateway, upload size and streaming, headers, health."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest
from deploy_files import DEPLOY, command_argv

from lungcad.settings import Settings

NGINX_CONF = DEPLOY / "nginx.conf"
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
REQUIRED_HEADERS = {"x-content-type-options", "x-frame-options", "referrer-policy",
                    "content-security-policy"}


@dataclass
class Block:
    name: str
    args: list[str]
    directives: list[tuple[str, list[str]]] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)

    def values(self, name: str) -> list[list[str]]:
        return [args for directive, args in self.directives if directive == name]

    def value(self, name: str) -> str | None:
        found = self.values(name)
        return found[-1][0] if found and found[-1] else None


def parse_nginx(text: str) -> Block:
    """A small nginx config parser: directives, blocks, quoted strings, comments."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{};]|[^\s{};]+',
                        re.sub(r"(?m)^\s*#.*$|\s#.*$", "", text))
    root = Block("main", [])
    stack, words = [root], []
    for token in tokens:
        if token == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        elif token == "{":
            block = Block(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced nginx config"
    return root


@pytest.fixture(scope="module")
def server() -> Block:
    servers = [b for b in parse_nginx(NGINX_CONF.read_text()).children if b.name == "server"]
    assert len(servers) == 1
    return servers[0]


def location_for(server: Block, uri: str) -> Block | None:
    """nginx's choice for a URI: exact match, then regex (first in order), then longest prefix."""
    locations = [b for b in server.children if b.name == "location"]
    for loc in locations:
        if loc.args[0] == "=" and loc.args[1] == uri:
            return loc
    for loc in locations:
        if loc.args[0] in ("~", "~*"):
            flags = re.IGNORECASE if loc.args[0] == "~*" else 0
            if re.search(loc.args[1], uri, flags):
                return loc
    prefixes = [loc for loc in locations if loc.args[0] not in ("=", "~", "~*")
                and uri.startswith(loc.args[-1])]
    return max(prefixes, key=lambda loc: len(loc.args[-1]), default=None)


def proxy_target(server: Block, loc: Block) -> str | None:
    target = loc.value("proxy_pass")
    if target and target.startswith("$"):
        assigned = {args[0]: args[1] for args in server.values("set")}
        target = assigned.get(target)
    return target


def size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmgKMG]?)", value).groups()
    return int(number) * SIZE_UNITS[unit.lower()]


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {None: 1, "s": 1, "m": 60, "h": 3600, "ms": 0}[unit]


@pytest.mark.parametrize("uri", ["/v1/studies", "/v1", "/healthz", "/readyz"])
def test_api_and_probes_are_proxied_to_the_gateway(uri, server, services):
    loc = location_for(server, uri)
    assert loc is not None and loc.value("proxy_pass"), f"{uri} is not proxied"
    argv = command_argv(services["gateway"]["command"])
    port = argv[argv.index("--port") + 1]
    assert proxy_target(server, loc) == f"http://gateway:{port}", uri


@pytest.mark.parametrize("uri", ["/metrics", "/", "/jobs/123", "/assets/app.js", "/v10"])
def test_other_paths_are_not_proxied(uri, server):
    loc = location_for(server, uri)
    assert loc is None or not loc.value("proxy_pass"), f"{uri} should not reach the gateway"


def test_body_size_covers_the_gateway_upload_limit(server, services):
    env = services["gateway"].get("environment") or {}
    limit = int(env.get("LUNGCAD_MAX_UPLOAD_BYTES",
                        Settings.model_fields["max_upload_bytes"].default))
    body = server.value("client_max_body_size")
    assert body, "client_max_body_size is not set (nginx defaults to 1 MiB)"
    assert size_bytes(body) > limit, f"{body} is below the gateway's limit of {limit} bytes"


def test_uploads_stream_through_with_long_timeouts(server):
    loc = location_for(server, "/v1/studies")
    assert loc.value("proxy_request_buffering") == "off"
    assert loc.value("proxy_http_version") == "1.1"
    assert seconds(loc.value("proxy_read_timeout")) >= 300
    assert seconds(loc.value("proxy_send_timeout")) >= 300
    assert seconds(server.value("client_body_timeout")) >= 60
    forwarded = {args[0].lower() for args in loc.values("proxy_set_header")}
    assert {"host", "x-forwarded-for", "x-forwarded-proto"} <= forwarded


def test_security_headers_apply_to_every_location(server):
    headers = {args[0].lower() for args in server.values("add_header")}
    assert REQUIRED_HEADERS <= headers, REQUIRED_HEADERS - headers
    assert server.value("server_tokens") in (None, "off")
    for loc in server.children:
        assert not loc.values("add_header"), (
            f"location {loc.args}: its add_header would drop the server's security headers"
        )


def test_listens_where_compose_and_the_healthcheck_expect(server, services):
    frontend = services["frontend"]
    listen = server.value("listen")
    assert any(str(port).endswith(":8080") for port in frontend["ports"]) and listen == "8080"
    probe = command_argv(frontend["healthcheck"]["test"])[-1]
    path = re.sub(r"^https?://[^/]+", "", probe)
    assert probe.startswith(f"http://127.0.0.1:{listen}/")
    loc = location_for(server, path)
    assert loc is not None and loc.args[0] == "=" and loc.values("return")


# Debian's binary is in /usr/sbin, which a non-root PATH may lack
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed here (`make test` installs "
                    "it as root: scripts/ensure-debian-package.sh)")
def test_nginx_accepts_the_config(tmp_path):
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                    f"events {{}}\nhttp {{ include {NGINX_CONF}; }}\n")
    result = subprocess.run([str(NGINX), "-t", "-c", str(main), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
