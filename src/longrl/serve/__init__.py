"""`longrl serve`: an OpenAI-compatible server on longrl's own engine (no GPU, no vLLM needed).

    longrl serve --model builtin:tiny-base --port 8000        # http://127.0.0.1:8000/v1

    from longrl.serve.launch import start_server               # in a test or a notebook
    with start_server("builtin:tiny-base", port=0, weights_root="runs") as server:   # reloads from runs/ only
        server.url                                             # point rollout.server.base_url, eval, the judge here

It serves what a rollout server must for `rollout.backend: server` (token ids in and out, `n`
samples per prompt with the request's seed, a weight reload with a version to check), and what
evaluation, the LLM judge and the SFT teacher send (`/v1/chat/completions`). Modules:
`protocol.py` (request checks, the work cap, reply format), `worker.py` (the model thread: batching,
reloads, admission, cancellation), `transport.py` (HTTP/1.1 on one asyncio loop: connection cap,
timeouts, strict framing), `access.py` (API key, weights root, server-named versions), `limits.py`
(every bound and its default), `server.py` (HTTP routes), `launch.py` (`start_server`: load a model
and serve it). This
package's own import stays light (`longrl ls` reads its benchmark names without torch). Decoding is `engine/generate.py`'s shared-prefix generator, so a group
served with seed s has the same tokens as the in-process engine gives group seed s.
"""
