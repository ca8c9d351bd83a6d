"""Servers on the host for the egress tests: standard library only, plus the openssl and git CLIs.

Each fixture binds 127.0.0.1 (or `bind`) port 0, serves from a thread, and stops cleanly (`with` or .stop()):

    HttpServer(routes)          plain HTTP: given paths, /stream/N (N bytes), /slow/S (S seconds)
    HttpServer(routes, tls=ca)  the same over HTTPS, with a certificate from a TestCA
    TestCA()                    a CA made by openssl at start: .pem, .bundle(), .server_context()
    PypiIndex()                 a PEP 503 "simple" index serving a pure-Python wheel built here
    NpmRegistry()               an npm registry stand-in: a package document and its .tgz
    GitRepo()                   a repository with one commit, over HTTP's dumb protocol
    Proxy()                     an HTTP proxy (CONNECT and absolute URIs) that logs each target
                                and can map names (like *.egress.test) to 127.0.0.1

URLs that clients are given (npm's tarball links, .url) name `host` (default 127.0.0.1): a guest
reaches the host only through its proxy, and NO_PROXY sends 127.0.0.1 and localhost straight to
the guest's own loopback, so such a test names the servers by a name the proxy maps instead.

    python3 test/integration/egress_fixtures.py --selftest
starts each fixture and fetches from it with urllib, curl, pip, npm and git (those present).
"""
import base64
import hashlib
import http.server
import io
import json
import os
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile

CHUNK = bytes(range(256)) * 256  # 64 KiB: /stream/N sends this pattern, cut to N bytes
SLOW_TICK = 0.1  # /slow/S sends one byte every SLOW_TICK seconds for S seconds
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "airlock",
           "GIT_AUTHOR_EMAIL": "airlock@example.invalid", "GIT_COMMITTER_NAME": "airlock",
           "GIT_COMMITTER_EMAIL": "airlock@example.invalid",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def stream_bytes(n):
    """What /stream/N sends: the first n bytes of CHUNK repeated (to check a download)."""
    return (CHUNK * (n // len(CHUNK) + 1))[:n]


class TestCA:
    """A certificate authority made with the openssl CLI in a temporary directory; it signs
    server certificates for 127.0.0.1, localhost and any other names asked for."""

    def __init__(self, names=()):
        self.dir = tempfile.mkdtemp(prefix="airlock-ca-")
        self.pem = os.path.join(self.dir, "ca.pem")
        self._key = os.path.join(self.dir, "ca.key")
        self._servers = {}
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self._key, "-out", self.pem, "-days", "7",
                      "-subj", "/CN=airlock egress test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-addext", "subjectKeyIdentifier=hash")
        self.default_names = tuple(names)

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], cwd=self.dir, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def server_cert(self, names=()):
        """(certificate path, key path) for 127.0.0.1, localhost and names."""
        names = ("localhost", *self.default_names, *names)
        if names in self._servers:
            return self._servers[names]
        base = os.path.join(self.dir, "server%d" % len(self._servers))
        san = ",".join(["IP:127.0.0.1"] + ["DNS:" + n for n in names])
        with open(base + ".ext", "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % san)
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=localhost")
        self._openssl("x509", "-req", "-in", base + ".csr", "-CA", self.pem, "-CAkey", self._key,
                      "-CAcreateserial", "-days", "7", "-extfile", base + ".ext",
                      "-out", base + ".pem")
        self._servers[names] = (base + ".pem", base + ".key")
        return self._servers[names]

    def server_context(self, names=()):
        cert, key = self.server_cert(names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    def client_context(self):
        return ssl.create_default_context(cafile=self.pem)

    def bundle(self, system="/etc/ssl/certs/ca-certificates.crt"):
        """A file with the system's CAs and this one: what a client trusts with an extra CA."""
        path = os.path.join(self.dir, "bundle.pem")
        with open(path, "wb") as out:
            if os.path.exists(system):
                with open(system, "rb") as f:
                    out.write(f.read().rstrip(b"\n") + b"\n")
            with open(self.pem, "rb") as f:
                out.write(f.read())
        return path

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "airlock-egress-fixture"

    def log_message(self, fmt, *args):
        self.server.fixture.log.append(self.requestline)

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def do_POST(self):
        self._serve(head=False)

    def _serve(self, head):
        fixture = self.server.fixture
        if fixture.serve_first(self):
            return
        path = urllib.parse.urlsplit(self.path).path  # git's dumb client adds ?service=...
        route = fixture.routes.get(path)
        if callable(route):
            route = route(self)
            if route is None:
                return  # the callable answered itself
        if route is not None:
            body, ctype = route if isinstance(route, tuple) else (route, "application/octet-stream")
            return self._send(200, body, ctype, head)
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "stream" and parts[2].isdigit():
            return self._stream(int(parts[2]), head)
        if len(parts) == 3 and parts[1] == "slow" and parts[2].isdigit():
            return self._slow(int(parts[2]), head)
        self._send(404, b"not found\n", "text/plain", head)

    def _send(self, status, body, ctype, head):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _stream(self, n, head):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        if head:
            return
        view = memoryview(CHUNK)
        try:
            while n > 0:
                k = min(n, len(CHUNK))
                self.wfile.write(view[:k])
                n -= k
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _slow(self, seconds, head):
        ticks = int(seconds / SLOW_TICK)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(ticks))
        self.end_headers()
        self.wfile.flush()
        if head:
            return
        stopping = self.server.fixture.stopping
        try:
            for _ in range(ticks):
                if stopping.wait(SLOW_TICK):
                    break
                self.wfile.write(b".")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class HttpServer:
    """Serves routes ({path: bytes | (bytes, content type) | callable(handler)}) and the
    generated paths /stream/N and /slow/S. With tls (a TestCA) it speaks HTTPS.

    .url     the base URL, naming host (default 127.0.0.1)
    .log     the request lines served, in order
    """

    def __init__(self, routes=None, tls=None, host="127.0.0.1", tls_names=(), bind="127.0.0.1"):
        self.routes = dict(routes or {})
        self.log = []
        self.stopping = threading.Event()
        self.host = host
        self._server = _Server((bind, 0), _Handler)
        self._server.fixture = self
        self.tls = tls
        if tls is not None:
            names = tuple(tls_names) + ((host,) if host not in ("127.0.0.1", "localhost") else ())
            ctx = tls.server_context(names)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = "%s://%s:%d" % ("https" if tls else "http", host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def serve_first(self, handler):
        """A subclass's own paths, before the routes: True when it answered."""
        return False

    def stop(self):
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _urlsafe_digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(name, version, source, requires=()):
    """(file name, bytes) of a pure-Python wheel: one module named after the project, holding
    source as its __init__.py."""
    module = name.replace("-", "_").lower()
    dist_info = "%s-%s.dist-info" % (module, version)
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: airlock egress test\n" % (
        name, version) + "".join("Requires-Dist: %s\n" % r for r in requires)
    files = {
        module + "/__init__.py": source.encode(),
        dist_info + "/METADATA": metadata.encode(),
        dist_info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: airlock-egress-fixtures\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        dist_info + "/top_level.txt": (module + "\n").encode(),
    }
    record = "".join("%s,sha256=%s,%d\n" % (p, _urlsafe_digest(d), len(d)) for p, d in files.items())
    record += dist_info + "/RECORD,,\n"
    files[dist_info + "/RECORD"] = record.encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return "%s-%s-py3-none-any.whl" % (module, version), out.getvalue()


class PypiIndex(HttpServer):
    """A PEP 503 index at .index_url (…/simple/) with one wheel per project in projects, a list
    of (name, version, module source[, requirements]). pip: --index-url INDEX_URL
    --only-binary=:all:."""

    DEFAULT = [("airlock-egress-probe", "1.0.0", "VALUE = 'airlock egress probe 1.0.0'\n")]

    def __init__(self, projects=None, **kw):
        routes = {}
        links = []
        for name, version, source, *requires in projects or self.DEFAULT:
            norm = name.lower().replace("_", "-").replace(".", "-")
            filename, data = build_wheel(name, version, source, *requires)
            routes["/files/" + filename] = data
            routes["/simple/%s/" % norm] = (
                ("<!DOCTYPE html>\n<html><body>\n<a href=\"../../files/%s#sha256=%s\">%s</a>\n"
                 "</body></html>\n" % (filename, hashlib.sha256(data).hexdigest(), filename)).encode(),
                "text/html")
            links.append('<a href="%s/">%s</a>\n' % (norm, norm))
        routes["/simple/"] = (("<!DOCTYPE html>\n<html><body>\n%s</body></html>\n"
                               % "".join(links)).encode(), "text/html")
        super().__init__(routes, **kw)
        self.index_url = self.url + "/simple/"


def build_npm_tarball(name, version, source):
    """The bytes of an npm package tarball: package/package.json and package/index.js."""
    manifest = json.dumps({"name": name, "version": version, "main": "index.js",
                           "license": "MIT", "description": "airlock egress test"}, indent=2)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in (("package/package.json", manifest.encode()),
                           ("package/index.js", source.encode())):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1767225600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class NpmRegistry(HttpServer):
    """An npm registry at .url serving, for each (name, version, index.js source) in packages,
    the package document at /NAME and its tarball. npm: --registry URL."""

    DEFAULT = [("airlock-egress-probe", "1.0.0",
                "module.exports = { value: 'airlock egress probe 1.0.0' };\n")]

    def __init__(self, packages=None, **kw):
        super().__init__({}, **kw)
        for name, version, source in packages or self.DEFAULT:
            tgz = build_npm_tarball(name, version, source)
            tar_path = "/%s/-/%s-%s.tgz" % (name, name.split("/")[-1], version)
            doc = {
                "name": name, "dist-tags": {"latest": version},
                "versions": {version: {
                    "name": name, "version": version, "main": "index.js",
                    "dist": {"tarball": self.url + tar_path,
                             "shasum": hashlib.sha1(tgz).hexdigest(),
                             "integrity": "sha512-" + base64.b64encode(
                                 hashlib.sha512(tgz).digest()).decode()}}},
            }
            body = (json.dumps(doc).encode(), "application/json")
            self.routes[tar_path] = tgz
            self.routes["/" + name] = body
            if name.startswith("@"):
                self.routes["/" + name.replace("/", "%2f")] = body
                self.routes["/" + name.replace("/", "%2F")] = body


class GitRepo(HttpServer):
    """A bare repository with one commit (README and the given files), served over HTTP at
    .clone_url: git's smart protocol through `git http-backend` (what hosting services speak,
    and what a shallow clone needs), or the dumb protocol with smart=False. Needs git on the
    host."""

    def serve_first(self, handler):
        url = urllib.parse.urlsplit(handler.path)
        if not self.smart or not url.path.startswith("/repo.git/"):
            return False
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        env = dict(os.environ, **GIT_ENV, GIT_PROJECT_ROOT=self.dir, GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=url.path, QUERY_STRING=url.query, REQUEST_METHOD=handler.command,
                   CONTENT_TYPE=handler.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(length), REMOTE_ADDR="127.0.0.1",
                   GIT_PROTOCOL=handler.headers.get("Git-Protocol", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        return True


    def __init__(self, files=None, smart=True, **kw):
        self.smart = smart
        self.dir = tempfile.mkdtemp(prefix="airlock-git-")
        work = os.path.join(self.dir, "work")
        bare = os.path.join(self.dir, "repo.git")
        files = files or {"README": "airlock egress probe\n"}
        env = dict(os.environ, **GIT_ENV)

        def git(*args, cwd=None):
            subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        git("-c", "init.defaultBranch=main", "init", "-q", work)
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(work, path)), exist_ok=True)
            with open(os.path.join(work, path), "w") as f:
                f.write(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "airlock egress probe", cwd=work)
        git("clone", "-q", "--bare", work, bare)
        git("update-server-info", cwd=bare)
        self.head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=bare, env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
        routes = {}
        for top, _, names in os.walk(bare):
            for n in names:
                full = os.path.join(top, n)
                with open(full, "rb") as f:
                    routes["/repo.git/" + os.path.relpath(full, bare)] = f.read()
        super().__init__(routes, **kw)
        self.clone_url = self.url + "/repo.git"

    def stop(self):
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _target(self, host, port):
        proxy = self.server.fixture
        proxy.log.append((self.command, "%s:%d" % (host, port)))
        for suffix in proxy.map_names:
            if host == suffix.lstrip(".") or host.endswith(suffix):
                return "127.0.0.1", port
        return host, port

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection(self._target(host.strip("[]"), int(port)), 10)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _pipe(self.connection, upstream, self.server.fixture.stopping)

    def _forward(self):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute http URI expected")
            return
        try:
            upstream = socket.create_connection(self._target(url.hostname, url.port or 80), 10)
        except OSError:
            self.send_error(502)
            return
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        head = ["%s %s HTTP/1.1" % (self.command, path)]
        for k, v in self.headers.items():
            if k.lower() not in ("proxy-connection", "connection", "keep-alive", "proxy-authorization"):
                head.append("%s: %s" % (k, v))
        head.append("Connection: close")
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            upstream.sendall(self.rfile.read(n))
        self.close_connection = True  # the answer runs until the upstream closes
        _pipe(self.connection, upstream, self.server.fixture.stopping, one_way=True)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _forward


def _pipe(client, upstream, stopping, one_way=False):
    """Copies bytes both ways (or upstream to client only) until either side closes."""
    socks = [upstream] if one_way else [client, upstream]
    try:
        while not stopping.is_set():
            ready, _, _ = select.select(socks, [], [], 0.2)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (upstream if s is client else client).sendall(data)
    except OSError:
        pass
    finally:
        upstream.close()


class Proxy(HttpServer):
    """An HTTP proxy at .url (port 0: any free port): CONNECT tunnels and absolute-URI requests.
    .log holds (method, host:port) for each; a target named by map_names (exact, or a suffix
    like ".egress.test") is connected to 127.0.0.1 instead."""

    def __init__(self, map_names=(".egress.test",), port=0):
        self.map_names = tuple(map_names)
        self.routes = {}
        self.log = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), _ProxyHandler)
        self._server.fixture = self
        self.port = self._server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()


def _selftest():
    tmp = tempfile.mkdtemp(prefix="airlock-egress-selftest-")
    ok = True

    def check(what, fn):
        nonlocal ok
        t0 = time.monotonic()
        try:
            note = fn()
            print("ok   %-28s %.2fs %s" % (what, time.monotonic() - t0, note or ""))
        except Exception as e:  # the self-test reports every failure, then fails
            ok = False
            detail = getattr(e, "stderr", None) or ""
            print("FAIL %-28s %r %s" % (what, e, detail[-400:] if isinstance(detail, str) else ""))

    def run(*argv, **kw):
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kw)

    def have(tool):
        if shutil.which(tool):
            return True
        print("skip %-28s (no %s on this host)" % (tool, tool))
        return False

    clean_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with TestCA(names=("files.egress.test",)) as ca, \
            HttpServer({"/hello": b"hello\n"}) as plain, \
            HttpServer({"/hello": b"hello tls\n"}, tls=ca) as tls, \
            PypiIndex() as pypi, NpmRegistry() as npm, GitRepo() as git, Proxy() as proxy:

        def plain_get():
            assert urllib.request.urlopen(plain.url + "/hello").read() == b"hello\n"

        def stream():
            n = 100 * 1024 * 1024
            with urllib.request.urlopen(plain.url + "/stream/%d" % n) as r:
                got, digest = 0, hashlib.sha256()
                while chunk := r.read(1 << 20):
                    got += len(chunk)
                    digest.update(chunk)
            assert got == n, got
            assert digest.digest() == hashlib.sha256(stream_bytes(n)).digest()
            return "100 MB"

        def slow():
            t0 = time.monotonic()
            body = urllib.request.urlopen(plain.url + "/slow/1").read()
            took = time.monotonic() - t0
            assert len(body) == 10 and took >= 0.9, (len(body), took)

        def tls_get():
            r = urllib.request.urlopen(tls.url + "/hello", context=ca.client_context())
            assert r.read() == b"hello tls\n"
            try:
                urllib.request.urlopen(tls.url + "/hello", context=ssl.create_default_context())
            except urllib.error.URLError:
                return "untrusted without the CA"
            raise AssertionError("trusted without the CA")

        def tls_curl():
            out = run("curl", "-sSf", "--cacert", ca.bundle(), tls.url + "/hello", env=clean_env)
            assert out.stdout == "hello tls\n"

        def pip_install():
            target = os.path.join(tmp, "py")
            run(sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
                "--disable-pip-version-check", "--only-binary=:all:", "--target", target,
                "--index-url", pypi.index_url, "airlock-egress-probe==1.0.0", env=clean_env)
            out = run(sys.executable, "-c", "import airlock_egress_probe as m; print(m.VALUE)",
                      env=dict(clean_env, PYTHONPATH=target))
            assert out.stdout.strip() == "airlock egress probe 1.0.0", out.stdout

        def npm_install():
            prefix = os.path.join(tmp, "node")
            env = dict(clean_env, npm_config_cache=os.path.join(tmp, "npm-cache"))
            common = ["--registry", npm.url + "/", "--no-audit", "--no-fund", "--no-update-notifier"]
            out = run("npm", "view", *common, "airlock-egress-probe", "version", env=env)
            assert out.stdout.strip() == "1.0.0", out.stdout
            run("npm", "install", *common, "--ignore-scripts", "--prefix", prefix,
                "airlock-egress-probe@1.0.0", env=env)
            out = run("node", "-e", "console.log(require('airlock-egress-probe').value)",
                      env=dict(env, NODE_PATH=os.path.join(prefix, "node_modules")))
            assert out.stdout.strip() == "airlock egress probe 1.0.0", out.stdout

        def git_clone():
            dest = os.path.join(tmp, "clone")
            run("git", "clone", "-q", git.clone_url, dest, env=dict(clean_env, **GIT_ENV))
            head = run("git", "-C", dest, "rev-parse", "HEAD").stdout.strip()
            assert head == git.head, (head, git.head)
            with open(os.path.join(dest, "README")) as f:
                assert f.read() == "airlock egress probe\n"

        def through_proxy():
            env = dict(clean_env, http_proxy=proxy.url, https_proxy=proxy.url)
            mapped = plain.url.replace("127.0.0.1", "files.egress.test")
            assert run("curl", "-sSf", mapped + "/hello", env=env).stdout == "hello\n"
            tls_mapped = tls.url.replace("127.0.0.1", "files.egress.test")
            out = run("curl", "-sSf", "--cacert", ca.pem, tls_mapped + "/hello", env=env)
            assert out.stdout == "hello tls\n"
            assert ("GET", "files.egress.test:%d" % plain.port) in proxy.log, proxy.log
            assert ("CONNECT", "files.egress.test:%d" % tls.port) in proxy.log, proxy.log

        check("http get", plain_get)
        check("http /stream/104857600", stream)
        check("http /slow/1", slow)
        check("https with the test CA", tls_get)
        if have("curl"):
            check("https curl + bundle", tls_curl)
            check("proxy (curl, mapped name)", through_proxy)
        check("pip install --target", pip_install)
        if have("npm") and have("node"):
            check("npm view + install", npm_install)
        if have("git"):
            check("git clone (dumb http)", git_clone)
    shutil.rmtree(tmp, ignore_errors=True)
    print("selftest: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] != ["--selftest"]:
        print("usage: egress_fixtures.py --selftest", file=sys.stderr)
        sys.exit(2)
    sys.exit(_selftest())
