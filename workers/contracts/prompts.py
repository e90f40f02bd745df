"""Prompts as text, and their prefix as a chain of block hashes: one reading for the proxy
(which routes on it) and the sample model's simulated engine (which caches by it).

The prompt of `POST /v1/completions` is its `prompt` (a string, or a list of strings
joined by newlines); of `POST /v1/chat/completions`, its `messages` rendered in order,
each as `role: content` and a newline (a content given as parts keeps their text).
Anything else has no prompt. The text is cut into blocks of `block_chars` characters;
each full block's value covers it and every block before it (a chain), so two prompts
share a block's value when they share everything up to its end (and, 64 bits of
checksums, almost never otherwise: a collision costs a wrong routing hint). No
tokenizer.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

COMPLETIONS = "/v1/completions"
CHAT_COMPLETIONS = "/v1/chat/completions"


def prompt_of(path: str, body: Mapping[str, Any]) -> str | None:
    """The prompt a request's JSON body carries, as text (None: it carries none)."""
    if path.endswith(CHAT_COMPLETIONS):
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        return "".join(_rendered(m) for m in messages if isinstance(m, Mapping))
    if path.endswith(COMPLETIONS):
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
    return None


def block_hashes(text: str, block_chars: int) -> list[int]:
    """A 64-bit value of everything up to the end of each full block of `block_chars`
    characters, in order: two running checksums (CRC-32 and Adler-32, in C: the proxy
    hashes every prompt it routes), read at each block's end."""
    width = max(1, block_chars)
    ascii_only = text.isascii()  # a character is a byte: slice the bytes once encoded
    data = text.encode() if ascii_only else b""
    crc, adler, hashes = 0, 1, []
    for start in range(0, len(text) - width + 1, width):
        block = (data[start : start + width] if ascii_only
                 else text[start : start + width].encode("utf-8", "surrogatepass"))  # fmt: skip
        crc, adler = zlib.crc32(block, crc), zlib.adler32(block, adler)
        hashes.append(crc << 32 | adler)
    return hashes


def _rendered(message: Mapping[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # OpenAI's content parts: their text, in order
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return f"{message.get('role', '')}: {content}\n"
