"""An OpenAI-compatible test engine with a known latency model, for `dynplan profile sweep`.

Real HTTP (stdlib `ThreadingHTTPServer`), real SSE: `POST /v1/completions` (and
`/v1/chat/completions`, whose template adds CHAT_TEMPLATE_TOKENS) streams one
chunked-transfer event per token, `usage` in a last event when
`stream_options.include_usage` is set, then `data: [DONE]`, as vLLM does; `GET /v1/models`
lists the model with `max_model_len`; `GET /metrics` exports `vllm:cache_config_info`
(num_gpu_blocks x block_size = the KV capacity) and a few load gauges.

The engine: one scheduler thread running a continuous batch, as vLLM's does without chunked
prefill. Each step either prefills every waiting request that fits in the KV cache (a
request reserves prompt + max_tokens tokens; one that does not fit waits) or decodes one
token for every running request. Step durations, in ms (`LatencyModel`):

    prefill step  = prefill_base + prefill_per_token x (uncached prompt tokens)
                    + prefill_per_token2 x sum(prompt_i^2)            (prompts seen before: cached)
    decode step   = step_base + step_per_seq x running + step_per_kv_token x (KV tokens in use)

each times a seeded log-normal noise factor (sigma `noise`) and `time_scale`. Steps run on
an absolute schedule, so a late wake-up of the thread is caught up and a window's mean step
is the model's. `LatencyModel.profile` is the profile an exact sweep of this engine gives:
what a sweep's result is compared with. Tokens: one per whitespace-separated word of at most
6 characters, two per longer word, plus one (a BOS), so a client cannot assume one token a
word. Generated text is " tok" per token, always `max_tokens` of them (finish_reason
"length").

`mode="json"` answers every completion with one JSON body even when asked to stream (a
server that does not stream). By hand:

    python -m scaler.devtools.openai_engine --port 8000 --model test-model --max-kv-tokens 50000
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Sequence

from scaler.core.profile import Profile, profile_from_raw

BLOCK_SIZE = 16
CHAT_TEMPLATE_TOKENS = 7  # what a chat template adds around one user message (role markers)
_MAX_BODY = 8 << 20
_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class LatencyModel:
    """Step durations in ms (see the module docstring), noise and a time scale."""

    prefill_base_ms: float = 20.0
    prefill_per_token_ms: float = 0.03
    prefill_per_token2_ms: float = 0.0
    step_base_ms: float = 8.0
    step_per_seq_ms: float = 0.2
    step_per_kv_token_ms: float = 0.0004
    noise: float = 0.02
    time_scale: float = 1.0

    def prefill_ms(self, prompts: Iterable[int], cached: Iterable[bool] | None = None) -> float:
        ps = list(prompts)
        hits = list(cached) if cached is not None else [False] * len(ps)
        new = [p for p, hit in zip(ps, hits) if not hit]
        ms = self.prefill_base_ms + self.prefill_per_token_ms * sum(new) + self.prefill_per_token2_ms * sum(p * p for p in new)
        return ms * self.time_scale

    def step_ms(self, seqs: int, kv_tokens: float) -> float:
        return (self.step_base_ms + self.step_per_seq_ms * seqs + self.step_per_kv_token_ms * kv_tokens) * self.time_scale

    def profile(
        self,
        isls: Sequence[int],
        decode_points: Sequence[tuple[int, int]],
        *,
        osl: int,
        max_kv_tokens: int,
        prefill_gpus: int = 1,
        decode_gpus: int = 1,
    ) -> Profile:
        """The noise-free profile of this engine at the given points (ISL; (ISL, concurrency)),
        with Dynamo's definitions: context = ISL + OSL/2, KV usage = n x context / capacity."""
        ttft = [self.prefill_ms([i]) for i in isls]
        prefill = {
            "prefill_isl": [float(i) for i in isls],
            "prefill_ttft": ttft,
            "prefill_thpt_per_gpu": [i / t * 1000.0 / prefill_gpus for i, t in zip(isls, ttft)],
        }
        kv, ctx, itl, thpt = [], [], [], []
        for isl, n in decode_points:
            c = isl + osl / 2.0
            step = self.step_ms(n, n * c)
            kv.append(min(n * c / max_kv_tokens, 1.0))
            ctx.append(c)
            itl.append(step)
            thpt.append(n * 1000.0 / step / decode_gpus)
        decode = {"x_kv_usage": kv, "y_context_length": ctx, "z_itl": itl, "z_thpt_per_gpu": thpt, "max_kv_tokens": float(max_kv_tokens)}
        return profile_from_raw(prefill, decode, source="<openai_engine model>")


def count_tokens(text: str) -> int:
    """The engine's tokenizer: a BOS, then one token per word of <= 6 characters, two above."""
    return 1 + sum(1 if len(w) <= 6 else 2 for w in text.split())


@dataclass
class _Request:
    prompt_tokens: int
    max_tokens: int
    cached: bool
    events: collections.deque = field(default_factory=collections.deque)  # (kind, value)
    ready: threading.Condition = field(default_factory=threading.Condition)
    generated: int = 0
    cancelled: bool = False

    @property
    def need(self) -> int:
        return self.prompt_tokens + self.max_tokens

    def push(self, kind: str, value: Any = None) -> None:
        with self.ready:
            self.events.append((kind, value))
            self.ready.notify()

    def pop(self, timeout: float) -> tuple[str, Any] | None:
        with self.ready:
            if not self.events:
                self.ready.wait(timeout)
            return self.events.popleft() if self.events else None


class Engine:
    """The scheduler thread and its queues (see the module docstring)."""

    def __init__(self, latency: LatencyModel, max_kv_tokens: int, *, seed: int = 0) -> None:
        self.latency = latency
        self.max_kv_tokens = max_kv_tokens
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._running: list[_Request] = []
        self._reserved = 0
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stop = False
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name="openai-engine", daemon=True)
        self._thread.start()

    def cached(self, prompt: str) -> bool:
        """Whether this prompt's KV is in the prefix cache (it is, from now on)."""
        key = hashlib.sha256(prompt.encode()).hexdigest()
        with self._cond:
            hit = key in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > _CACHE_ENTRIES:
                self._seen.popitem(last=False)
        return hit

    def submit(self, req: _Request) -> None:
        with self._cond:
            self._waiting.append(req)
            self._cond.notify()

    def load(self) -> tuple[int, int, float]:
        """(running, waiting, KV usage fraction)."""
        with self._cond:
            return len(self._running), len(self._waiting), self._reserved / self.max_kv_tokens

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _noisy(self, ms: float) -> float:
        sigma = self.latency.noise
        return ms * math.exp(self._rng.gauss(-sigma * sigma / 2, sigma)) if sigma > 0 else ms

    def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and not self._waiting and not self._running:
                    self._cond.wait()
                    next_at = max(next_at, time.monotonic())  # idle time is not owed to anyone
                if self._stop:
                    return
                self._running = [r for r in self._running if not self._drop(r)]
                admitted: list[_Request] = []
                while self._waiting and self._reserved + self._waiting[0].need <= self.max_kv_tokens:
                    r = self._waiting.popleft()
                    if r.cancelled:
                        continue
                    self._reserved += r.need
                    admitted.append(r)
                batch = admitted or list(self._running)
            if not batch:
                # only cancelled requests were waiting
                continue
            if admitted:
                ms = self.latency.prefill_ms([r.prompt_tokens for r in admitted], [r.cached for r in admitted])
            else:
                kv = sum(r.prompt_tokens + r.generated for r in batch)
                ms = self.latency.step_ms(len(batch), kv)
            next_at += self._noisy(ms) / 1000.0
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            self.steps += 1
            finished = []
            for r in batch:
                r.generated += 1
                r.push("token", now)
                if r.generated >= r.max_tokens:
                    r.push("done")
                    finished.append(r)
            with self._cond:
                for r in finished:
                    self._reserved -= r.need
                    if r in self._running:
                        self._running.remove(r)
                self._running.extend(r for r in admitted if r not in finished)

    def _drop(self, r: _Request) -> bool:
        """Forget a request whose client went away (under the lock)."""
        if r.cancelled:
            self._reserved -= r.need
        return r.cancelled


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # one small write per token: without this, Nagle's algorithm holds each one back
        # until the client's (delayed) ACK of the previous, tens of ms of made-up latency
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"object": "error", "message": message, "type": "BadRequestError", "code": status})

    def _authorised(self) -> bool:
        key = self.server.config.api_key
        if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {key}":
            self.close_connection = True  # a POST body left unread must not be taken for a request
            self._error(401, "Unauthorized")
            return False
        return True

    def do_GET(self) -> None:
        cfg = self.server.config
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": cfg.model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": cfg.max_model_len}
            ]})
        elif self.path == "/metrics":
            running, waiting, usage = self.server.engine.load()
            blocks = self.server.engine.max_kv_tokens // BLOCK_SIZE
            text = (
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
                "# TYPE vllm:cache_config_info gauge\n"
                f'vllm:cache_config_info{{block_size="{BLOCK_SIZE}",cache_dtype="auto",enable_prefix_caching="True",'
                f'engine="0",gpu_memory_utilization="0.9",num_cpu_blocks="None",num_gpu_blocks="{blocks}"}} 1.0\n'
                f'vllm:num_requests_running{{engine="0",model_name="{cfg.model}"}} {running}\n'
                f'vllm:num_requests_waiting{{engine="0",model_name="{cfg.model}"}} {waiting}\n'
                f'vllm:kv_cache_usage_perc{{engine="0",model_name="{cfg.model}"}} {usage:.6f}\n'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        cfg = self.server.config
        chat = self.path == "/v1/chat/completions"
        if self.path != "/v1/completions" and not chat:
            self._error(404, f"no route {self.path}")
            return
        if not self._authorised():
            return
        if cfg.fail_after is not None and self.server.count_completion() > cfg.fail_after:
            self.close_connection = True
            self._error(503, "Service Unavailable")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= _MAX_BODY:
                raise ValueError("bad length")
            doc = json.loads(self.rfile.read(length))
            if chat:
                prompt = " ".join(str(m["content"]) for m in doc["messages"])
            else:
                prompt = doc["prompt"]
            max_tokens = int(doc.get("max_tokens", 16))
            if not isinstance(prompt, str) or max_tokens < 1:
                raise ValueError("bad prompt or max_tokens")
        except (ValueError, KeyError, TypeError):
            self._error(400, "invalid request")
            return
        if doc.get("model") != cfg.model:
            self._error(404, f"The model `{doc.get('model')}` does not exist.")
            return
        prompt_tokens = count_tokens(prompt) + (CHAT_TEMPLATE_TOKENS if chat else 0)
        if prompt_tokens + max_tokens > cfg.max_model_len:
            self._error(400, f"This model's maximum context length is {cfg.max_model_len} tokens.")
            return
        engine = self.server.engine
        req = _Request(prompt_tokens, max_tokens, engine.cached(prompt))
        if req.need > engine.max_kv_tokens:
            self._error(400, "the request does not fit in the KV cache")
            return
        engine.submit(req)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens, "total_tokens": prompt_tokens + max_tokens}
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        kind = "chat.completion" if chat else "text_completion"
        if not doc.get("stream") or cfg.mode == "json":
            while (ev := req.pop(1.0)) is None or ev[0] != "done":
                pass
            text = " tok" * max_tokens
            choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0, "text": text}
            self._json(200, {"id": rid, "object": kind, "model": cfg.model, "choices": [{**choice, "finish_reason": "length"}],
                             "usage": usage})
            return
        include_usage = bool((doc.get("stream_options") or {}).get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if chat:  # as vLLM: a first chunk with the role and no content
                self._chunk({"id": rid, "object": "chat.completion.chunk", "model": cfg.model,
                             "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            sent = 0
            while True:
                ev = req.pop(1.0)
                if ev is None:
                    continue
                if ev[0] == "done":
                    break
                sent += 1
                finish = "length" if sent == max_tokens else None
                piece = {"delta": {"content": " tok"}} if chat else {"text": " tok", "logprobs": None}
                self._chunk({"id": rid, "object": f"{kind}.chunk" if chat else kind, "created": int(ev[1]), "model": cfg.model,
                             "choices": [{"index": 0, **piece, "finish_reason": finish}]})
            if include_usage:
                self._chunk({"id": rid, "object": f"{kind}.chunk" if chat else kind, "model": cfg.model, "choices": [], "usage": usage})
            self._write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            req.cancelled = True
            self.close_connection = True

    def _chunk(self, doc: dict[str, Any]) -> None:
        self._write(f"data: {json.dumps(doc)}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@dataclass(frozen=True)
class ServerConfig:
    model: str = "test-model"
    max_model_len: int = 8192
    mode: str = "sse"  # "sse" | "json"
    api_key: str | None = field(default=None, repr=False)  # as vLLM's --api-key: /v1/* needs "Bearer KEY"
    fail_after: int | None = None  # completions answered before every later one gets HTTP 503 (an engine gone bad)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a decode batch connects all at once; socketserver's default is 5
    config: ServerConfig
    engine: Engine
    completions = 0
    _count_lock = threading.Lock()

    def count_completion(self) -> int:
        """This completion request's number, from 1."""
        with self._count_lock:
            self.completions += 1
            return self.completions

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that left is no news
            super().handle_error(request, client_address)


class OpenAIEngineServer:
    """The engine behind a real HTTP server on 127.0.0.1 (a port of its own unless given);
    a context manager. `url` is the base URL (`http://127.0.0.1:PORT`)."""

    def __init__(
        self,
        latency: LatencyModel | None = None,
        *,
        max_kv_tokens: int = 50_000,
        config: ServerConfig | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency = latency or LatencyModel()
        self.max_kv_tokens = (max_kv_tokens // BLOCK_SIZE) * BLOCK_SIZE  # what /metrics reports
        self.config = config or ServerConfig()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.config = self.config
        self._httpd.engine = self.engine = Engine(self.latency, self.max_kv_tokens, seed=seed)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.engine.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIEngineServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m scaler.devtools.openai_engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", default="test-model")
    ap.add_argument("--max-kv-tokens", type=int, default=50_000)
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--mode", choices=("sse", "json"), default="sse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=LatencyModel.noise)
    ap.add_argument("--time-scale", type=float, default=1.0, help="multiply every step duration (e.g. 0.1: ten times faster)")
    args = ap.parse_args(argv)
    latency = replace(LatencyModel(), noise=args.noise, time_scale=args.time_scale)
    server = OpenAIEngineServer(
        latency, max_kv_tokens=args.max_kv_tokens, config=ServerConfig(args.model, args.max_model_len, args.mode),
        seed=args.seed, host=args.host, port=args.port,
    )
    print(f"listening on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
