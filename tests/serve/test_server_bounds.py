"""`longrl serve` against attackers and unlucky clients, on loopback (issue 25, cases 1-4).

Every client here is a raw socket or httpx call with a timeout of a few seconds: each test ends by
itself whatever the server does.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import threading
import time

import httpx
import pytest
import torch

from longrl.config.rl import RolloutServerConfig
from longrl.engine.remote import RemoteGenerator, RolloutServerError
from longrl.models.weights import save_weights
from longrl.serve.limits import ServeLimits
from longrl.serve.protocol import RequestError, Served, parse_completion
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = "sekrit-key-123"


@pytest.fixture()
def make_server(tiny_model, tokenizer, tmp_path):
    """A function starting longrl serve of a copy of the tiny model (keyword arguments: ModelServer's)."""
    started = []

    def make(**kwargs) -> ModelServer:
        worker = ModelWorker(copy.deepcopy(tiny_model), tokenizer, "tiny", "startup", groups_per_batch=4)
        server = ModelServer(worker, port=0, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


def root_url(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def exchange(server, data: bytes, timeout: float = 5.0) -> tuple[int | None, dict, bytes, bytes]:
    """Send raw bytes; (status, headers, body, whatever followed) of the first reply; status None when the
    connection closed (or stayed silent for `timeout` s) without one."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return None, {}, b"", buffer
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", 0))
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            body, after = rest[:length], rest[length:]
            try:                                          # anything after the reply, until the server closes
                while chunk := sock.recv(65536):
                    after += chunk
            except TimeoutError:
                after += b"<still open>"
            except ConnectionError:
                pass                                      # closed with a reset
            return int(lines[0].split(" ")[1]), headers, body, after
        except (TimeoutError, ConnectionError):
            return None, {}, b"", buffer


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def post_head(path: str, length: str, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


# -- 1. idle connections ------------------------------------------------------------------------
def test_idle_connections_cost_no_thread_and_are_closed_by_the_server(make_server):
    server = make_server(limits=ServeLimits(max_connections=50, header_timeout_s=1.0))
    threads = threading.active_count()
    held = []
    try:
        for _ in range(150):                                       # 3x the cap, each with half a request head
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
            held.append(sock)
        start = time.monotonic()
        assert httpx.get(root_url(server) + "/health", timeout=5).status_code == 200
        assert time.monotonic() - start < 1.0                      # answered at once while they are held
        assert threading.active_count() <= threads                 # no thread per connection
        assert server.transport.connections <= 50                  # the cap: the longest idle were closed
        for sock in held:                                          # every one is closed by the server
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass                                               # evicted to make room (reset)
    finally:
        for sock in held:
            sock.close()
    assert server.transport.stats["evicted"] >= 100 and server.transport.stats["timeouts"] >= 1


def test_over_the_cap_with_no_idle_connection_a_new_one_gets_503(make_server):
    server = make_server(limits=ServeLimits(max_connections=1))
    body = b'{"prompt": [1, 2, 3], "n": 64, "max_tokens": 3000, "ignore_eos": true}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as busy:
        busy.sendall(post_head("/v1/completions", str(len(body))) + body)
        wait_for(lambda: server.worker.decoding == 1)
        got, headers, reply, after = exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got == 503 and headers["retry-after"] == "1" and b"connections, its maximum" in reply and after == b""
    wait_for(lambda: server.cancelled == 1)
    assert httpx.get(root_url(server) + "/health", timeout=5).status_code == 200


# -- 2. abandoned and oversized work ----------------------------------------------------------------
def test_a_client_that_leaves_takes_its_work_with_it(make_server):
    server = make_server()
    body = b'{"prompt": [1, 2, 3], "n": 256, "max_tokens": 3000, "ignore_eos": true}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head("/v1/completions", str(len(body))) + body)
        wait_for(lambda: server.worker.decoding == 1)
        time.sleep(0.3)                                              # decoding for a while now
    start = time.monotonic()
    reply = httpx.post(server.url + "/completions", json={"prompt": [5, 6], "max_tokens": 2}, timeout=20)
    assert reply.status_code == 200 and time.monotonic() - start < 5      # not minutes behind the abandoned one
    assert server.cancelled == 1 and server.worker.stopped == 1


def test_work_over_the_cap_is_refused_before_it_starts(make_server):
    server = make_server(limits=ServeLimits(max_request_tokens=10_000))
    reply = httpx.post(server.url + "/completions", json={"prompt": [1, 2, 3], "n": 8, "max_tokens": 2000}, timeout=10)
    assert reply.status_code == 400
    assert re.search(r"16,024 tokens of work .* at most 10,000 per request", reply.json()["error"]["message"])
    assert server.worker.batches == 0
    ok = httpx.post(server.url + "/completions", json={"prompt": [1, 2, 3], "n": 2, "max_tokens": 4}, timeout=10)
    assert ok.status_code == 200


def test_the_default_work_cap_refuses_the_issue_request_and_admits_long_context_rollouts():
    served = Served(name="m", tokenizer=None, stops=(0,), vocab_size=100, context=1 << 20)
    with pytest.raises(RequestError, match=r"65,542,144 tokens of work"):   # 8 prompts x n 256 x 32,000 new tokens
        parse_completion({"prompt": [[1, 2, 3]] * 8, "n": 256, "max_tokens": 32_000}, served)
    job = parse_completion({"prompt": [1] * 120_000, "n": 16, "max_tokens": 10_000}, served)
    assert job.n == 16


def test_a_full_queue_answers_429_with_retry_after(make_server):
    server = make_server(limits=ServeLimits(max_queued_prompts=1))
    worker = server.worker
    long = b'{"prompt": [1, 2, 3], "n": 64, "max_tokens": 3000, "ignore_eos": true}'
    short = b'{"prompt": [4, 5], "max_tokens": 2}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as busy, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as queued:
        busy.sendall(post_head("/v1/completions", str(len(long))) + long)
        wait_for(lambda: worker.decoding == 1)                        # the long request decodes
        queued.sendall(post_head("/v1/completions", str(len(short))) + short)
        wait_for(lambda: worker.queued_prompts == 1)
        refused = httpx.post(server.url + "/completions", json={"prompt": [7, 8], "max_tokens": 2}, timeout=10)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "prompts are waiting" in refused.json()["error"]["message"]
    wait_for(lambda: worker.queued_prompts == 0 and server.cancelled == 2)   # both clients left: nothing runs on


# -- 3. framing ----------------------------------------------------------------------------------
FRAMING = [
    ("negative Content-Length", post_head("/v1/completions", "-1") + b'{"prompt": [1, 2], "max_tokens": 2}', 400,
     "Content-Length must be one non-negative integer"),
    ("non-numeric Content-Length", post_head("/v1/completions", "abc") + b"{}", 400, "Content-Length must be"),
    ("two Content-Lengths", post_head("/v1/completions", "2", "Content-Length: 3\r\n") + b"{}", 400, "Content-Length must be"),
    ("over the body cap", post_head("/v1/completions", str(600 << 20)), 413, "is over this server's"),
    ("no Content-Length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n{}", 411, "needs a Content-Length"),
    ("chunked", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\n{\"a\":\r\n0\r\n\r\nGET /health HTTP/1.1\r\n\r\n", 411, "Transfer-Encoding (chunked) is not supported"),
    ("100k-deep JSON", post_head("/v1/completions", "100000", "Connection: close\r\n") + b"[" * 100_000, 400,
     "nested deeper than 64 levels"),
    ("head over 64 KB", b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, "request head is over"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0 is not supported"),
    ("malformed request line", b"HELLO\r\n\r\n", 400, "malformed request line"),
    ("malformed header", b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
]


@pytest.mark.parametrize("data,status,message", [c[1:] for c in FRAMING], ids=[c[0] for c in FRAMING])
def test_bad_framing_gets_one_clear_error_and_no_traceback(make_server, capfd, data, status, message):
    server = make_server()
    got, _, body, after = exchange(server, data)
    assert got == status and message in body.decode(), (got, body)
    assert after == b""                                      # closed: nothing else is read as a request
    assert "Traceback" not in capfd.readouterr().err
    assert httpx.get(root_url(server) + "/health", timeout=5).status_code == 200


def test_a_slow_body_times_out_and_expect_100_continue_is_answered(make_server):
    server = make_server(limits=ServeLimits(body_timeout_s=0.5))
    got, _, body, _ = exchange(server, post_head("/v1/completions", "100") + b'{"prompt"')
    assert got == 408 and b"did not arrive within 0.5 s" in body
    payload = b'{"prompt": [1, 2], "max_tokens": 2}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head("/v1/completions", str(len(payload)), "Expect: 100-continue\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(payload)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")


# -- 4. access -----------------------------------------------------------------------------------
def test_an_api_key_guards_every_route_but_health(make_server, monkeypatch, tmp_path, tiny_model):
    server = make_server(api_key=KEY, weights_root=tmp_path)
    assert httpx.get(root_url(server) + "/health", timeout=5).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("GET", "/model_info"), ("POST", "/update_weights_from_disk")):
            reply = httpx.request(method, root_url(server) + path, headers=headers, json={}, timeout=5)
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer", (headers, path)
    got, _, body, after = exchange(server, post_head("/v1/completions", str(100 << 20)))   # refused on the head alone
    assert got == 401 and b"API key" in body and after == b""
    # The rollout client with the key: publish, check the version, roll out.
    monkeypatch.setenv("LONGRL_TEST_KEY", KEY)
    generator = RemoteGenerator(RolloutServerConfig(base_url=server.url, api_key_env="LONGRL_TEST_KEY", timeout_s=30),
                                tmp_path / "served")
    generator.sync_weights(tiny_model, "step-1")
    assert generator.version.startswith("step-1@") and len(generator.generate([[5, 6]], 2, _params(), [1])) == 1


def _params():
    from longrl.engine.generate import SamplingParams

    return SamplingParams(4, temperature=1.0, stop_token_ids=(0,))


def reload(server, path, version=None):
    body = {"model_path": str(path)} | ({"weight_version": version} if version else {})
    return httpx.post(root_url(server) + "/update_weights_from_disk", json=body, timeout=10)


def test_reloads_load_only_inside_the_weights_root(make_server, tmp_path, tiny_model_dir, tiny_model):
    assert reload(make_server(), tiny_model_dir).json()["message"].startswith("reloads are off")
    root = tmp_path / "root"
    root.mkdir()
    server = make_server(weights_root=root)
    state = {k: v.clone() for k, v in server.worker.model.state_dict().items()}
    # Outside the root: the same answer whether the folder exists or not.
    answers = [reload(server, p) for p in (tiny_model_dir, tmp_path / "absent", root / ".." / "absent", "../../etc")]
    assert {a.status_code for a in answers} == {403}
    assert len({a.json()["message"] for a in answers}) == 1 and "inside this server's weights root" in answers[0].text
    (root / "link").symlink_to(tiny_model_dir, target_is_directory=True)
    assert reload(server, root / "link").status_code == 403
    # Inside it, a folder whose index or shards lead elsewhere, or whose shard is a FIFO, is refused at once.
    escape = root / "escape"
    escape.mkdir()
    (escape / "model.safetensors.index.json").write_text('{"weight_map": {"w": "../../x/model.safetensors"}}')
    shard_link, fifo = root / "shard-link", root / "fifo"
    shard_link.mkdir()
    (shard_link / "model.safetensors").symlink_to(tiny_model_dir / "model.safetensors")
    fifo.mkdir()
    os.mkfifo(fifo / "model.safetensors")
    cases = [(escape, "is not a file name"), (shard_link, "points outside"), (fifo, "not a regular file")]
    for folder, message in cases:
        answer = reload(server, folder)
        assert answer.status_code == 400 and message in answer.json()["message"], answer.json()
    assert server.worker.version == "default"
    assert all(torch.equal(v, state[k]) for k, v in server.worker.model.state_dict().items())
    save_weights(tiny_model, root / "good")
    assert reload(server, "good", "v1").status_code == 200      # relative to the root


def test_the_server_names_versions_so_a_foreign_reload_is_noticed(make_server, tmp_path, tiny_model):
    server = make_server(weights_root=tmp_path)
    generator = RemoteGenerator(RolloutServerConfig(base_url=server.url, api_key_env=None, timeout_s=30), tmp_path / "served")
    generator.sync_weights(tiny_model, "step-1")
    mine = generator.version
    assert re.fullmatch(r"step-1@[0-9a-f]{8}", mine) and server.worker.version == mine
    save_weights(tiny_model, tmp_path / "other")
    assert reload(server, tmp_path / "other", mine).status_code == 400       # no client picks the name itself
    foreign = reload(server, tmp_path / "other", "step-1")                  # someone else's reload, same proposal
    assert foreign.status_code == 200 and foreign.json()["weight_version"] not in (mine, "step-1")
    with pytest.raises(RolloutServerError, match="reports weight version 'step-1@.*published 'step-1@"):
        generator.generate([[5, 6]], 2, _params(), [1])


def test_starting_a_started_server_again_adds_no_serving_thread(tiny_model, tokenizer, tmp_path):
    """`with start_server(...)` enters a server start_server already started: still one HTTP thread."""
    import copy
    import threading

    from longrl.serve.server import ModelServer
    from longrl.serve.worker import ModelWorker

    def http_threads():
        return sum(t.name == "longrl-serve-http" for t in threading.enumerate())

    before = http_threads()
    server = ModelServer(ModelWorker(copy.deepcopy(tiny_model), tokenizer, "tiny", "startup"), port=0).start()
    with server:
        assert http_threads() == before + 1 and server.running()
    assert http_threads() == before
