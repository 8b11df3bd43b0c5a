"""What the settings are made of: the YAML file, `${ENV}` / `${file:/path}` references and
`FBOC_<SECTION>__<KEY>` overrides (README, Configuration).

Every problem is reported as (key path, message). No message holds a value from the file, a
referenced file or the environment: any of them may be a secret.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from consumer.errors import ConfigError

MAX_CONFIG_BYTES = 8 << 20
MAX_REFERENCED_BYTES = 1 << 20
MAX_VALUES = 100_000  # YAML aliases can make a small file expand into a huge one
MAX_DEPTH = 64

Problems = list[tuple[str, str]]

_REF = re.compile(r"\$\{([^}]+)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_INDEX = re.compile(r"[0-9]+", re.ASCII)


def key_path(loc: Sequence[int | str]) -> str:
    """Render a location as `sources[0].dialect`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<file>"


def read_text(path: str | Path, limit: int) -> str:
    """A regular UTF-8 text file of at most `limit` bytes; ValueError or OSError says why not."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:
        raise ValueError("not a valid path") from None
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    if b"\0" in data:
        raise ValueError("a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None


def load_document(path: str | Path) -> dict[Any, Any]:
    """The YAML mapping in `path`; YAML errors are reported by position, never by source text."""
    try:
        text = read_text(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {path}: {exc.strerror or type(exc).__name__}")]) from None
    except ValueError as exc:
        raise ConfigError([("<file>", f"{path} is {exc}")]) from None
    data = _parse_yaml(text, "<file>", "the file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("<file>", "the top level must be a mapping")])
    return data


class _RepeatedKey(yaml.constructor.ConstructorError):
    pass


# libyaml's parser is fast on hostile input and bounds nesting; the pure-Python one recurses
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that refuses a key repeated in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[type, Any]] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            typed = (type(key), key)  # 1 and true are different keys
            try:
                if typed in seen:
                    raise _RepeatedKey(None, None, "repeated key", key_node.start_mark)
                seen.add(typed)
            except TypeError:  # an unhashable key: the constructor below reports it
                break
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def _parse_yaml(text: str, where: str, what: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        if isinstance(exc, _RepeatedKey):
            raise ConfigError([(where, f"{what} repeats a key{at}")]) from None
        if "nesting depth" in (exc.problem or ""):
            raise ConfigError([(where, f"{what} is nested too deeply{at}")]) from None
        raise ConfigError([(where, f"{what} is not valid YAML{at}")]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            [(where, f"{what} holds a character YAML does not allow (character {exc.position + 1})")]
        ) from None
    except yaml.YAMLError:
        raise ConfigError([(where, f"{what} is not valid YAML")]) from None
    except RecursionError:
        raise ConfigError([(where, f"{what} is nested too deeply")]) from None


def _file_text(path: str) -> str:
    """A referenced file's content without one trailing newline."""
    text = read_text(path, MAX_REFERENCED_BYTES)
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


class _Resolver:
    """Replaces references inside strings, recursively, counting what it visits."""

    def __init__(self, env: Mapping[str, str], problems: Problems) -> None:
        self.env = env
        self.problems = problems
        self.values = 0

    def value(self, value: Any, loc: tuple[int | str, ...]) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ConfigError([("<file>", f"more than {MAX_VALUES} values (aliases included)")])
        if isinstance(value, dict | list) and len(loc) >= MAX_DEPTH:
            self.problems.append((key_path(loc), f"nested deeper than {MAX_DEPTH} levels"))
            return None
        if isinstance(value, dict):
            return {k: self.value(v, (*loc, k if isinstance(k, str) else str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, (*loc, i)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        where = key_path(loc)
        return _REF.sub(lambda match: self.reference(match.group(1), where), value)

    def reference(self, ref: str, where: str) -> str:
        if ref.startswith("file:"):
            try:
                return _file_text(ref[5:])
            except OSError as exc:
                problem = f"cannot read the referenced file ({exc.strerror or type(exc).__name__})"
            except ValueError as exc:
                problem = f"the referenced file is {exc}"
            self.problems.append((where, problem))
            return ""
        if not _ENV_NAME.fullmatch(ref):
            self.problems.append(
                (where, "a ${...} reference must name an environment variable or be ${file:/path}")
            )
            return ""
        if ref not in self.env:
            self.problems.append((where, f"environment variable {ref} is not set"))
            return ""
        return self.env[ref]


def resolve(data: dict[Any, Any], env: Mapping[str, str], problems: Problems) -> Any:
    return _Resolver(env, problems).value(data, ())


def _find_key(node: dict[Any, Any], name: str) -> str:
    """The existing key `name` means (case-insensitively, when only one matches), else `name`."""
    matches = [k for k in node if isinstance(k, str) and k.lower() == name]
    return matches[0] if len(matches) == 1 else name


def apply_env_overrides(data: dict[Any, Any], env: Mapping[str, str], problems: Problems) -> None:
    """FBOC_<SECTION>__<KEY>[__<KEY or list index>...]=value sets exactly that one key.

    Values are parsed as YAML (numbers, booleans, lists); shorter names apply first.
    """
    names = sorted((n for n in env if n.startswith("FBOC_") and "__" in n), key=lambda n: (n.count("__"), n))
    for name in names:
        parts = [p.lower() for p in name[5:].split("__")]
        if not all(parts):
            problems.append((name, "an override names a key on each side of every __"))
            continue
        target = _target(data, parts, name, problems)
        if target is None:
            continue
        node, key, where = target
        raw = env[name]
        try:
            node[key] = _parse_yaml(raw, where, f"{name}: the value") if raw else raw
        except ConfigError as exc:
            problems += exc.problems


def _target(
    data: dict[Any, Any], parts: list[str], name: str, problems: Problems
) -> tuple[Any, Any, str] | None:
    """The container and key the override sets, and its key path; None after a problem."""
    node: Any = data
    loc: list[int | str] = []
    for depth, part in enumerate(parts):
        key: int | str
        if isinstance(node, list):
            index = int(part) if _INDEX.fullmatch(part) else -1
            if not 0 <= index < len(node):
                shown = [*loc, *(int(p) if _INDEX.fullmatch(p) else p for p in parts[depth:])]
                problems.append(
                    (key_path(shown), f"{name}: {key_path(loc)} has {len(node)} item(s), no item {part}")
                )
                return None
            key = index
        elif isinstance(node, dict):
            key = _find_key(node, part)
        else:
            problems.append((key_path(loc), f"{name}: {key_path(loc)} is not a mapping or a list"))
            return None
        loc.append(key)
        if depth < len(parts) - 1:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]
    return node, loc[-1], key_path(loc)
