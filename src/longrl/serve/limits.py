"""Every bound of `longrl serve` in one place, with its default (`longrl serve --help` shows the options).

    ModelServer(worker, limits=ServeLimits(max_connections=200, max_request_tokens=1 << 20))
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REQUEST_TOKENS = 1 << 21      # 2,097,152: n=16 samples of a 120K-token prompt with 10K new tokens fit
MAX_QUEUED_PROMPTS = 1024         # prompts waiting for the model (a request of P prompts counts P)


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on connections, request sizes, time and queued work (see `serve/transport.py`, `worker.py`)."""

    max_connections: int = 1000          # open connections; over it the longest-idle one is closed (none idle: 503)
    header_timeout_s: float = 10.0       # a request head must be complete this long after its first byte
    keepalive_timeout_s: float = 30.0    # an idle kept-alive connection is closed after this
    body_timeout_s: float = 60.0         # the body must arrive within this of the head
    write_timeout_s: float = 60.0        # a reply the client does not read within this is dropped, with the connection
    max_head_bytes: int = 64 << 10       # request line + headers
    max_headers: int = 100
    max_body_bytes: int = 256 << 20      # one request body (a 128K-token prompt as JSON ids is ~1 MB)
    max_pending_body_bytes: int = 1 << 30   # bodies of all requests in flight together (503 past it)
    max_request_tokens: int = MAX_REQUEST_TOKENS   # work per request: sum over prompts of n x (prompt + max_tokens)
    max_queued_prompts: int = MAX_QUEUED_PROMPTS   # admission: prompts waiting for the model (429 past it)

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
