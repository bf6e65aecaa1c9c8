"""Requests to a running SGLang server: streamed /generate (so time to first token and inter-token latency are
measured, not guessed), `batch_size` requests in flight at once, and the server's own memory report.

SGLang streams /generate as server-sent events, `data: {json}` per scheduler step and `data: [DONE]` at the
end; `meta_info.completion_tokens` counts the tokens so far, and `output_ids` are cumulative unless the server
runs with `--incremental-streaming-output` (both are handled). With speculation one step carries every accepted
token, so a chunk of k tokens after a gap g counts as k inter-token latencies of g / k.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 16 * 1024 * 1024  # one SSE line (cumulative output ids of a long answer stay far below)


@dataclass
class RequestRecord:
    """One request as the client saw it; times are seconds on the monotonic clock."""

    index: int  # the prompt's index
    start: float
    end: float
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_ids: list[int] | None = None
    text: str | None = None
    completion_tokens: int = 0
    spec_accept_length: float | None = None
    spec_verify_ct: int | None = None
    spec_accept_histogram: list[int] | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float:
        return self.end - self.start


def payload(prompt: Any, *, max_new_tokens: int, temperature: float) -> dict[str, Any]:
    """A streamed /generate request; `ignore_eos` so every request decodes exactly `max_new_tokens` (throughput
    compares like with like, and so do the outputs of the baseline and a speculative run)."""
    body: dict[str, Any] = {"sampling_params": {"temperature": temperature, "max_new_tokens": max_new_tokens,
                                                "ignore_eos": True}, "stream": True}
    body["text" if isinstance(prompt, str) else "input_ids"] = prompt
    return body


def stream_generate(base_url: str, index: int, body: dict[str, Any], *, timeout: float) -> RequestRecord:
    """Send one streamed /generate; never raises for what the server does (the record carries the error)."""
    req = urllib.request.Request(f"{base_url}/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    t0 = time.monotonic()
    rec = RequestRecord(index=index, start=t0, end=t0)
    last_t = t0
    ids: list[int] = []
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            while True:
                line = resp.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_LINE:
                    raise ValueError(f"an event line longer than {MAX_LINE} bytes")
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                now = time.monotonic()
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    raise ValueError(f"server error: {str(chunk['error'])[:300]}")
                info = chunk.get("meta_info")
                meta: dict[str, Any] = info if isinstance(info, dict) else {}
                count = meta.get("completion_tokens")
                chunk_ids = chunk.get("output_ids")
                if isinstance(chunk_ids, list):
                    cumulative = isinstance(count, int) and len(chunk_ids) == count and len(chunk_ids) >= len(ids)
                    ids = list(chunk_ids) if cumulative else ids + list(chunk_ids)
                if isinstance(chunk.get("text"), str):
                    rec.text = chunk["text"]
                if not isinstance(count, int):
                    count = len(ids)
                new = count - rec.completion_tokens
                if new > 0:
                    if rec.ttft_s is None:
                        rec.ttft_s = now - t0
                    else:
                        rec.itl_s.extend([(now - last_t) / new] * new)
                    last_t = now
                    rec.completion_tokens = count
                _spec_meta(rec, meta)
    except urllib.error.HTTPError as exc:
        rec.error = f"HTTP {exc.code}: {exc.read(300).decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        rec.error = f"request failed ({exc})"
    rec.end = time.monotonic()
    rec.output_ids = ids if ids else None
    return rec


def _spec_meta(rec: RequestRecord, meta: dict[str, Any]) -> None:
    accept = meta.get("spec_accept_length")
    if isinstance(accept, (int, float)) and not isinstance(accept, bool):
        rec.spec_accept_length = float(accept)
    verify = meta.get("spec_verify_ct")
    if isinstance(verify, int) and not isinstance(verify, bool):
        rec.spec_verify_ct = verify
    hist = meta.get("spec_accept_histogram")
    if isinstance(hist, list) and hist and all(isinstance(n, int) and n >= 0 for n in hist):
        rec.spec_accept_histogram = hist[:1024]


def run_batch(base_url: str, prompts: list[Any], *, batch_size: int, max_new_tokens: int, temperature: float,
              timeout: float) -> tuple[list[RequestRecord], float, float]:
    """Every prompt once, `batch_size` requests in flight (a new one starts as one finishes). Returns the records
    in prompt order and the wall-clock start and end. Worker threads are daemons: an interrupt (Ctrl-C) returns
    control at once; stopping the server then ends their requests."""
    records: list[RequestRecord | None] = [None] * len(prompts)
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        while True:
            with lock:
                i = next_index[0]
                if i >= len(prompts):
                    return
                next_index[0] += 1
            records[i] = stream_generate(base_url, i, payload(prompts[i], max_new_tokens=max_new_tokens,
                                                              temperature=temperature), timeout=timeout)

    threads = [threading.Thread(target=worker, daemon=True, name=f"bench-request-{n}")
               for n in range(min(batch_size, len(prompts)))]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.2)  # short joins: signals reach the main thread between them
    end = time.monotonic()
    return [r for r in records if r is not None], start, end


def warm_up(base_url: str, prompt: Any, *, timeout: float) -> str | None:
    """One short request before measuring (first-request compilation and allocation are not the drafter's
    cost); the error, if any."""
    rec = stream_generate(base_url, -1, payload(prompt, max_new_tokens=8, temperature=0.0), timeout=timeout)
    return rec.error


def server_memory(base_url: str) -> dict[str, float] | None:
    """SGLang's own GPU memory accounting, GB: `memory_usage` of /get_server_info (or /server_info in newer
    releases), first scheduler: weights, KV cache, CUDA graphs. SGLang reports no peak; None when absent."""
    for path in ("/get_server_info", "/server_info"):
        try:
            with urllib.request.urlopen(f"{base_url}{path}", timeout=10) as resp:
                info = json.loads(resp.read(8 * 1024 * 1024))
        except (urllib.error.URLError, OSError, ValueError):
            continue
        states = info.get("internal_states") if isinstance(info, dict) else None
        state = states[0] if isinstance(states, list) and states and isinstance(states[0], dict) else info
        usage = state.get("memory_usage") if isinstance(state, dict) else None
        if isinstance(usage, dict):
            out = {k: float(v) for k, v in usage.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "token_capacity"}
            return out or None
    return None
