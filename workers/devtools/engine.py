"""The sample model's simulated LLM engine: what vLLM does with time, without a GPU.

Its cost model (written in the README too):
- a request's prompt is `prompt_tokens` = ceil(characters / 4); it is cut into KV blocks
  of `block_chars` characters, chained (`workers.contracts.prompts`), and the leading
  blocks already in the cache are its cached tokens (vLLM's automatic prefix caching);
- the cache holds `kv_blocks` blocks, least recently used first out (0: no cache);
- prefill takes `prefill_s_per_token` per uncached prompt token, then the first token
  comes; decode takes `decode_s_per_token` per output token (`max_tokens`, default
  `output_tokens`); MODEL_LATENCY_S is added before the prefill;
- at most `max_running` requests run at once (0: no limit); the others wait in a queue.
It reports what vLLM reports, by vLLM's names: requests running and waiting, KV-cache
use, prefix-cache queries and hits (tokens), and a time-to-first-token histogram.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from workers.contracts.prompts import block_hashes

CHARS_PER_TOKEN = 4
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class EngineConfig:
    max_running: int = 0
    kv_blocks: int = 0
    block_chars: int = 64
    prefill_s_per_token: float = 0.0
    decode_s_per_token: float = 0.0
    output_tokens: int = 16


@dataclass(frozen=True)
class Prefilled:
    prompt_tokens: int
    cached_tokens: int
    prefill_s: float


@dataclass
class Engine:
    config: EngineConfig = field(default_factory=EngineConfig)
    running: int = 0
    waiting: int = 0
    queried_tokens: int = 0
    hit_tokens: int = 0
    _cache: OrderedDict[int, None] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _turn: threading.Condition = field(init=False)
    _ttft: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS_S) + 1))
    _ttft_sum: float = 0.0

    def __post_init__(self) -> None:
        self._turn = threading.Condition(self._lock)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Run when a place is free (at most `max_running` at once), waiting till then."""
        limit = self.config.max_running
        with self._turn:
            self.waiting += 1
            while limit and self.running >= limit:
                self._turn.wait()
            self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            with self._turn:
                self.running -= 1
                self._turn.notify()

    def prefill(self, prompt: str) -> Prefilled:
        """What the prompt costs: its tokens, those the cache already holds, the time."""
        tokens = math.ceil(len(prompt) / CHARS_PER_TOKEN)
        hashes = block_hashes(prompt, self.config.block_chars) if self.config.kv_blocks else []
        with self._lock:
            cached_blocks = 0
            for digest in hashes:
                if digest not in self._cache:
                    break
                cached_blocks += 1
            for digest in hashes:  # the whole prompt is in the cache after
                self._cache[digest] = None
                self._cache.move_to_end(digest)
            while len(self._cache) > self.config.kv_blocks:
                self._cache.popitem(last=False)
            cached = min(tokens, cached_blocks * self.config.block_chars // CHARS_PER_TOKEN)
            self.queried_tokens += tokens
            self.hit_tokens += cached
        return Prefilled(tokens, cached, (tokens - cached) * self.config.prefill_s_per_token)

    def first_token_after(self, seconds: float) -> None:
        with self._lock:
            self._ttft_sum += seconds
            for i, bound in enumerate(TTFT_BUCKETS_S):
                if seconds <= bound:
                    self._ttft[i] += 1
                    return
            self._ttft[-1] += 1

    def metrics(self) -> str:
        """vLLM's metric names, Prometheus text."""
        with self._lock:
            usage = len(self._cache) / self.config.kv_blocks if self.config.kv_blocks else 0.0
            lines = [
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running {self.running}",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting {self.waiting}",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc {usage:.4f}",
                "# TYPE vllm:prefix_cache_queries counter",
                f"vllm:prefix_cache_queries_total {self.queried_tokens}",
                "# TYPE vllm:prefix_cache_hits counter",
                f"vllm:prefix_cache_hits_total {self.hit_tokens}",
                "# TYPE vllm:time_to_first_token_seconds histogram",
            ]
            total = 0
            for bound, count in zip(TTFT_BUCKETS_S, self._ttft, strict=False):
                total += count
                lines.append(f'vllm:time_to_first_token_seconds_bucket{{le="{bound:g}"}} {total}')
            total += self._ttft[-1]
            lines += [f'vllm:time_to_first_token_seconds_bucket{{le="+Inf"}} {total}',
                      f"vllm:time_to_first_token_seconds_count {total}",
                      f"vllm:time_to_first_token_seconds_sum {self._ttft_sum:.6f}"]  # fmt: skip
        return "\n".join(lines) + "\n"
