from hypothesis import given
from hypothesis import strategies as st

from consumer.core.capi.recent import Memo, Recent


def test_it_never_holds_more_than_its_size() -> None:
    cache: Recent[int] = Recent(100)
    for i in range(1_000):
        cache.set(str(i), i)
        assert len(cache) <= 100
    assert len(cache) >= 50  # and it keeps at least the last half


def test_what_was_set_lately_is_found() -> None:
    cache: Recent[int] = Recent(100)
    for i in range(1_000):
        cache.set(str(i), i)
    assert [cache.get(str(i)) for i in range(950, 1_000)] == list(range(950, 1_000))
    assert cache.get("3") is None


def test_a_value_in_use_stays_while_new_ones_stream_past() -> None:
    cache: Recent[bool] = Recent(100)
    cache.set("recurring", False)
    for i in range(10_000):
        cache.set(str(i), True)
        if i % 40 == 0:  # read more often than every half (50 new values)
            assert cache.get("recurring") is False
    assert cache.get("recurring") is False


def test_clear_forgets_everything() -> None:
    cache: Recent[int] = Recent(10)
    for i in range(8):
        cache.set(str(i), i)
    cache.clear()
    assert len(cache) == 0
    assert cache.get("7") is None


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=300), st.integers(1, 12))
def test_a_hit_is_always_the_value_last_set(ops: list[tuple[bool, int]], size: int) -> None:
    cache: Recent[int] = Recent(size)
    last: dict[str, int] = {}
    for n, (is_set, key) in enumerate(ops):
        if is_set:
            cache.set(str(key), n)
            last[str(key)] = n
        else:
            found = cache.get(str(key))
            assert found is None or found == last[str(key)]
        assert len(cache) <= max(2, size)


def test_a_memo_builds_each_key_once() -> None:
    built: list[str] = []

    def build(key: str) -> str:
        built.append(key)
        return key.upper()

    memo: Memo[str, str] = Memo(3, build)
    assert [memo.get(key) for key in ("a", "b", "a", "b", "a")] == ["A", "B", "A", "B", "A"]
    assert built == ["a", "b"]


def test_a_memo_never_holds_more_than_its_size() -> None:
    memo: Memo[int, int] = Memo(3, lambda key: key * 2)
    for key in range(100):
        assert memo.get(key) == key * 2
        assert len(memo) <= 3
    assert list(memo.values()) == [198]  # it started again at 99
    memo.clear()
    assert len(memo) == 0
