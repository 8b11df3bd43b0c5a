import hashlib

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.capi import digest


@given(st.binary(max_size=300))
def test_sha256_hex_is_hashlibs_sha256(data: bytes) -> None:
    assert digest.sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_the_interpreters_own_sha256_is_used_when_there_is_one() -> None:
    # CPython 3.11 has _sha256 (3.12: _sha2); OpenSSL's hashlib.sha256 is only the fallback
    assert digest._SHA256 is not hashlib.sha256
    assert digest.sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
