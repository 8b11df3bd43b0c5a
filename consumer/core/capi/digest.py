"""SHA-256 as lower-case hex: every hash fboc sends or derives goes through `sha256_hex`.

CPython's own SHA-256 (`_sha256`; `_sha2` from 3.12) is used when the interpreter has it: for the
short values hashed here (an e-mail address, a name) it costs about half of OpenSSL's through
`hashlib.sha256`, which sets up and frees an EVP context on every call. The digest is the same;
`tests/core/test_digest.py` checks it against hashlib.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any, Final


def _builtin_sha256() -> Callable[[bytes], Any]:
    for name in ("_sha256", "_sha2"):
        try:
            constructor = getattr(importlib.import_module(name), "sha256", None)
        except ImportError:
            continue
        if callable(constructor):
            return constructor  # type: ignore[no-any-return]
    return hashlib.sha256  # an interpreter built without them: OpenSSL's


_SHA256: Final[Callable[[bytes], Any]] = _builtin_sha256()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lower-case hex digits."""
    digest: str = _SHA256(data).hexdigest()
    return digest
