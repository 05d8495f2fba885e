"""`--download`: the parquet files the hub serves (a loopback hub here: the outside world), checked, then written."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.cli import main
from longrl.errors import DataError, UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.eval.fetch import Hub, fetch_missing

HOTPOT = [{"_id": "h1", "input": "Where?", "context": "In Tarsk.", "answers": ["Tarsk"], "length": 3,
           "dataset": "hotpotqa", "language": "en", "all_classes": None},
          {"_id": "h2", "input": "Who?", "context": "Ilo did.", "answers": ["Ilo"], "length": 2,
           "dataset": "hotpotqa", "language": "en", "all_classes": None}]
FRAMES = [{"Prompt": "Which year?", "Answer": "1889", "wiki_items": [{"title": "Tower", "text": "Built in 1889."}]}]


def parquet_bytes(rows) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


class FakeHub:
    """The hub and its dataset viewer on 127.0.0.1: GET path -> (status, bytes); queries seen in `gets`."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.listings: dict[tuple[str, str], list[dict]] = {}
        self.gets: list[str] = []
        self.auth: list[str | None] = []    # Authorization header of each request
        self.status: int | None = None      # force every answer to this status

    def __enter__(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def do_GET(self):
                hub.gets.append(self.path)
                hub.auth.append(self.headers.get("Authorization"))
                parts = urlsplit(self.path)
                if hub.status is not None:
                    status, body = hub.status, b"{}"
                elif parts.path == "/viewer/parquet":
                    query = parse_qs(parts.query)
                    files = hub.listings.get((query["dataset"][0], query["config"][0]))
                    status, body = (404, b"{}") if files is None else (200, json.dumps({"parquet_files": files}).encode())
                elif parts.path in hub.files:
                    status, body = 200, hub.files[parts.path]
                else:
                    status, body = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("LONGRL_DATASETS_SERVER", fake.url + "/viewer")
        yield fake


def test_listed_parquet_files_are_read_checked_and_written(tmp_path, hub):
    # LongBench: the dataset viewer lists the converted files of config hotpotqa (no dataset script runs)
    hub.files["/files/hotpotqa/test/0.parquet"] = parquet_bytes(HOTPOT[:1])
    hub.files["/files/hotpotqa/test/1.parquet"] = parquet_bytes(HOTPOT[1:])
    hub.listings[("THUDM/LongBench", "hotpotqa")] = [
        {"dataset": "THUDM/LongBench", "config": "hotpotqa", "split": "test", "url": f"{hub.url}/files/hotpotqa/test/{k}.parquet"}
        for k in (0, 1)]
    written = fetch_missing(["hotpotqa", "synthetic-64"], str(tmp_path))
    assert written == [tmp_path / "hotpotqa.jsonl"]
    assert [s.answers for s in BENCHMARKS.get("hotpotqa").load(tmp_path).samples] == [["Tarsk"], ["Ilo"]]
    count = len(hub.gets)
    assert fetch_missing(["hotpotqa"], str(tmp_path)) == [] and len(hub.gets) == count   # present: not fetched again


def test_without_a_listing_the_parquet_branch_is_read(tmp_path, hub):
    branch = "/datasets/Tongyi-Zhiwen/frames/resolve/refs%2Fconvert%2Fparquet/default/test"
    hub.files[f"{branch}/0000.parquet"] = parquet_bytes(FRAMES)
    assert main(["eval", "--download", "--benchmarks", "frames", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "never"), "--model", "/no/such/model"]) == 2          # files first, then the model fails
    assert BENCHMARKS.get("frames").load(tmp_path).samples[0].answers == ["1889"]
    assert f"{branch}/0001.parquet" in hub.gets                                       # shards read until a 404


def test_rows_in_another_format_write_nothing(tmp_path, hub):
    hub.files["/files/frames.parquet"] = parquet_bytes([{"question": "q", "answer": "a"}])
    hub.listings[("Tongyi-Zhiwen/frames", "default")] = [{"config": "default", "split": "train", "url": f"{hub.url}/files/frames.parquet"}]
    with pytest.raises(DataError, match=r"Tongyi-Zhiwen/frames \(train\), row 0, field 'Prompt': missing"):
        fetch_missing(["frames"], str(tmp_path))
    assert not (tmp_path / "frames.jsonl").exists()


def test_failures_say_what_to_do(tmp_path, hub, monkeypatch):
    with pytest.raises(UserError, match="the hub serves no parquet files"):
        fetch_missing(["qasper"], str(tmp_path))
    hub.status = 401
    with pytest.raises(UserError, match="gated dataset.*HF_TOKEN"):
        fetch_missing(["qasper"], str(tmp_path))
    with pytest.raises(UserError, match="--data-dir"):
        fetch_missing(["frames"], None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        fetch_missing(["qasper"], str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_hf_token_is_sent(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with pytest.raises(UserError, match="no parquet files"):
        fetch_missing(["qasper"], str(tmp_path))
    assert hub.auth and set(hub.auth) == {"Bearer hf_secret"}
    explicit = Hub(token="")                       # an empty token: nothing sent
    try:
        assert "Authorization" not in explicit.client.headers
    finally:
        explicit.close()
