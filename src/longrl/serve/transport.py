"""The HTTP/1.1 side of `longrl serve`: one asyncio event loop, in one thread, holds every connection.

    transport = HttpTransport("127.0.0.1", 0, app, ServeLimits())   # binds now (port 0: any free port)
    transport.start(); transport.port; transport.close()

No thread per connection: an idle connection costs a coroutine and a socket, so thousands of them
neither slow the answers to others nor outlive their clients. Each connection is bounded
(`ServeLimits`, defaults in `serve/limits.py`):
- at most `max_connections` are open: a connection over the cap closes the one idle longest
  (waiting for a request head, or kept alive between requests); with none idle it is answered
  503 (Retry-After: 1) and closed;
- a request head (request line and headers: `max_head_bytes`, `max_headers`) must be complete within
  `header_timeout_s` of its first byte (of the connect, for a new connection), else 408 and close; a
  kept-alive connection idle for `keepalive_timeout_s` is closed; the body must arrive within
  `body_timeout_s` of the head (408); a reply the client does not read within `write_timeout_s`
  is dropped with the connection;
- bodies come with a strict Content-Length: digits only (400), at most `max_body_bytes` (413),
  required on POST (411); Transfer-Encoding (chunked) is refused with 411 and the connection closed, so
  its bytes are never read as a request; the bodies of all requests in flight hold at most
  `max_pending_body_bytes` (503 + Retry-After); `Expect: 100-continue` is answered once the head passed;
- a malformed head gets a 4xx and the connection is closed (the stream can no longer be trusted).

The application object has `admit(request)`, called on the head before the body is read (an API
key check answers 401 there), returning a Response to refuse or None, and `await respond(request)`,
returning a Response or None when the client went away (the connection is then closed).
`request.gone` is an asyncio.Event set once the client closes or resets its connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

from longrl.serve.limits import ServeLimits

LOG = logging.getLogger(__name__)
DIGITS = re.compile(r"[0-9]{1,15}")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")     # an HTTP method or header name
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BACKLOG = 1024
LINGER_S = 2.0          # a refused connection is read (and dropped) this long before it is closed
LINGER_BYTES = 4 << 20  # ... or until this much is dropped
FD_SPARE = 64           # file descriptors kept for the model, the weights and logs beside the connections


@dataclass
class Request:
    method: str
    target: str                    # as sent: "/v1/completions?x=1"
    version: str                   # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]        # lower-case names; a repeated header's values joined with ", "
    gone: asyncio.Event            # set when the client closes or resets the connection
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False            # close the connection after this reply


class App(Protocol):
    def admit(self, request: Request) -> Response | None: ...

    async def respond(self, request: Request) -> Response | None: ...


def fd_room(connections: int) -> int:
    """Raise this process's open-file limit (RLIMIT_NOFILE, soft) towards `connections` + FD_SPARE, up to the
    hard limit; returns how many connections it leaves room for (`connections` or fewer)."""
    try:
        import resource  # POSIX only: elsewhere the limit is left alone
    except ImportError:
        return connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + FD_SPARE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return connections if soft == resource.RLIM_INFINITY else max(1, min(connections, soft - FD_SPARE))


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-style error: {"error": {"message", "type", "code"}}."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


def error(status: int, message: str, close: bool = False, **headers: str) -> Response:
    return Response(status, error_body(status, message), {k.replace("_", "-"): v for k, v in headers.items()}, close)


class _Refused(Exception):
    """A request head this transport answers itself, then closes the connection."""

    def __init__(self, response: Response):
        self.response = response


class _Protocol(asyncio.StreamReaderProtocol):
    """A stream protocol that also says when the client went away (EOF or reset)."""

    def __init__(self, reader: asyncio.StreamReader, serve, loop):
        self.gone = asyncio.Event()
        super().__init__(reader, serve, loop=loop)

    def eof_received(self):
        self.gone.set()
        return super().eof_received()

    def connection_lost(self, exc):
        self.gone.set()
        super().connection_lost(exc)


class HttpTransport:
    """HTTP/1.1 over asyncio for `app` (see the module docstring)."""

    def __init__(self, host: str, port: int, app: App, limits: ServeLimits):
        self.app, self.limits = app, limits
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        self._sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.port = int(self._sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[asyncio.Transport, None] = {}      # open connections
        self._idle: dict[asyncio.Transport, None] = {}       # of those, the idle ones, longest idle first
        self._handlers: set[asyncio.Task] = set()
        self._pending_body = 0
        self.stats = {"refused": 0, "evicted": 0, "timeouts": 0}

    @property
    def connections(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        """Serve from a background thread; a second call (e.g. `with start_server(...)`) changes nothing."""
        if self.running():
            return
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="longrl-serve-http", daemon=True)
        self._thread.start()
        started.wait(30)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop listening, drop every connection, stop the loop; safe to call twice."""
        if self.running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
            except Exception as exc:  # a loop that is stuck or already stopping: log, then stop it anyway
                LOG.warning("longrl serve: unclean HTTP shutdown (%s: %s)", type(exc).__name__, exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self.running() and not self._loop.is_closed():
            self._loop.close()
        self._sock.close()

    # -- the loop thread -------------------------------------------------------------------------
    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._protocol, sock=self._sock, backlog=BACKLOG))
        finally:
            started.set()
        self._loop.run_forever()

    def _protocol(self) -> _Protocol:
        reader = asyncio.StreamReader(limit=self.limits.max_head_bytes, loop=self._loop)
        return _Protocol(reader, self._serve, self._loop)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._conns):
            transport.abort()
        tasks = [t for t in self._handlers if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        gone = transport.get_protocol().gone
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            if len(self._conns) >= self.limits.max_connections and not self._evict():
                self.stats["refused"] += 1
                await self._send(writer, error(503, f"the server holds {len(self._conns)} connections, its maximum; "
                                                    "retry later", close=True, retry_after="1"), keep_alive=False)
                return
            self._conns[transport] = None
            await self._requests(reader, writer, gone)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, TimeoutError):
            pass                                      # the client left, or the server closes
        except Exception:  # a bug here must not take the loop down: log it, drop this connection
            LOG.exception("longrl serve: error on a connection")
        finally:
            self._handlers.discard(task)
            self._conns.pop(transport, None)
            self._idle.pop(transport, None)
            if not transport.is_closing():
                transport.close()                     # after the reply is flushed, or within write_timeout_s
            if transport.get_write_buffer_size():
                self._loop.call_later(self.limits.write_timeout_s, transport.abort)

    def _evict(self) -> bool:
        """Close the connection idle longest to make room for a new one; False when none is idle."""
        if not self._idle:
            return False
        oldest = next(iter(self._idle))
        self._idle.pop(oldest)
        self._conns.pop(oldest, None)
        oldest.abort()
        self.stats["evicted"] += 1
        return True

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gone: asyncio.Event) -> None:
        """Serve requests on one connection until it closes, times out or says Connection: close."""
        transport, first = writer.transport, True
        while True:
            self._idle[transport] = None              # idle, newest last
            head = await self._read_head(reader, writer, first)
            if head is None:
                return
            self._idle.pop(transport, None)
            first = False
            try:
                request, length, keep_alive = self._parse_head(head, gone)
            except _Refused as refused:
                await self._refuse(reader, writer, refused.response)
                return
            refusal = self.app.admit(request)
            if refusal is not None:
                if length or refusal.close or not keep_alive:
                    await self._refuse(reader, writer, refusal)
                    return
                await self._send(writer, refusal, keep_alive=True)
                continue
            if self._pending_body + length > self.limits.max_pending_body_bytes:
                await self._refuse(reader, writer, error(503, "the server holds too many request bodies in flight; "
                                                              "retry later", close=True, retry_after="1"))
                return
            self._pending_body += length
            try:
                if length:
                    if request.headers.get("expect", "").lower() == "100-continue":
                        writer.write(CONTINUE)
                    try:
                        request.body = await asyncio.wait_for(reader.readexactly(length), self.limits.body_timeout_s)
                    except TimeoutError:
                        self.stats["timeouts"] += 1
                        await self._refuse(reader, writer, error(408, f"the request body ({length} bytes) did not arrive "
                                                                      f"within {self.limits.body_timeout_s:g} s", close=True))
                        return
                response = await self.app.respond(request)
            finally:
                self._pending_body -= length
            if response is None:                      # the client went away: nothing to answer
                return
            keep_alive = keep_alive and not response.close
            await self._send(writer, response, keep_alive)
            if not keep_alive:
                return

    async def _read_head(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bool) -> bytes | None:
        """The next request head (up to and including its blank line); None when the connection should close."""
        limits = self.limits
        try:
            start = b""
            if not first:                             # kept alive: wait for the next request's first byte
                start = await asyncio.wait_for(reader.read(1), limits.keepalive_timeout_s)
                if not start:
                    return None
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limits.header_timeout_s)
            return start + rest
        except TimeoutError:
            self.stats["timeouts"] += 1
            if first or start:
                await self._refuse(reader, writer, error(408, f"the request head did not arrive within "
                                                              f"{limits.header_timeout_s:g} s", close=True))
            return None
        except asyncio.LimitOverrunError:
            await self._refuse(reader, writer, error(431, f"the request head is over {limits.max_head_bytes} bytes",
                                                      close=True))
            return None
        except asyncio.IncompleteReadError:
            return None

    def _parse_head(self, head: bytes, gone: asyncio.Event) -> tuple[Request, int, bool]:
        """The request (no body yet), its body's length and whether the connection stays open after it."""
        lines = head.decode("latin-1").split("\r\n")[:-2]
        parts = lines[0].split(" ")
        if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not parts[1] or not parts[2].startswith("HTTP/"):
            raise _Refused(error(400, "malformed request line", close=True))
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Refused(error(505, f"{version} is not supported: speak HTTP/1.1", close=True))
        if len(lines) - 1 > self.limits.max_headers:
            raise _Refused(error(431, f"more than {self.limits.max_headers} header lines", close=True))
        headers: dict[str, str] = {}
        lengths: list[str] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not TOKEN.fullmatch(name):
                raise _Refused(error(400, f"malformed header line {line[:80]!r}", close=True))
            name, value = name.lower(), value.strip(" \t")
            if name == "content-length":
                lengths.append(value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers:
            raise _Refused(error(411, f"Transfer-Encoding ({headers['transfer-encoding']}) is not supported: send the body "
                                      "with a Content-Length", close=True))
        length = 0
        if lengths:
            if len(set(lengths)) != 1 or not DIGITS.fullmatch(lengths[0]):
                raise _Refused(error(400, f"Content-Length must be one non-negative integer, got {', '.join(lengths)[:80]!r}",
                                     close=True))
            length = int(lengths[0])
            if length > self.limits.max_body_bytes:
                raise _Refused(error(413, f"a request body of {length} bytes is over this server's {self.limits.max_body_bytes}",
                                     close=True))
        elif method == "POST":
            raise _Refused(error(411, "a POST needs a Content-Length", close=True))
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
        return Request(method, target, version, headers, gone), length, keep_alive

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: Response) -> None:
        """Reply and close, reading (and dropping) what the client still sends for at most LINGER_S: closing a
        socket with unread input resets the connection, and the client could lose the reply."""
        await self._send(writer, response, keep_alive=False)
        if writer.can_write_eof():
            writer.write_eof()
        deadline = self._loop.time() + LINGER_S
        dropped = 0
        while dropped < LINGER_BYTES and (left := deadline - self._loop.time()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(65536), left)
            except (TimeoutError, ConnectionError):
                return
            if not data:
                return
            dropped += len(data)

    async def _send(self, writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {response.status} {reason}", "Content-Type: application/json",
                 f"Content-Length: {len(response.body)}", "Connection: " + ("keep-alive" if keep_alive else "close")]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout_s)
