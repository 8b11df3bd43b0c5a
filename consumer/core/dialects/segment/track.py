"""The objects of a Segment / RudderStack track call that docs/dialects.md's paths run through, and the
raw customer fields and Limited Data Use read from them.

Paths are read from a handful of objects fetched once per record (traits, context.traits, their
`address` objects, properties, the two integration keys) rather than through dotted-path lookups:
that keeps a track call at a few dozen dict lookups. The first non-empty path wins (docs/dialects.md#paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from consumer.config.settings import DestinationSettings
from consumer.core.capi.event import RecordContext, is_empty, is_mapping, parse_time_ms
from consumer.core.dialects.common import MAX_SAFE_INT, ZIP_NAMES, number, one, text

# `<FB>` in docs/dialects.md#segment: Segment's key, then RudderStack's.
INTEGRATION_KEYS: Final = ("Facebook Offline Conversions", "FacebookOfflineConversions")

ID_NAMES: Final = ("userId", "id")
BIRTHDAY_NAMES: Final = ("birthday", "dateOfBirth", "dateofbirth", "dob", "DOB")
FIRST_NAMES: Final = ("firstName", "firstname", "first_name")
LAST_NAMES: Final = ("lastName", "lastname", "last_name")
ADDRESS: Final[dict[str, tuple[str, ...]]] = {
    "ct": ("city",),
    "st": ("state",),
    "zp": ZIP_NAMES,
    "country": ("country",),
}


def obj(value: Any) -> dict[str, Any]:
    """``value`` as a dict (compiled code reads a dict directly): itself, a copy of another
    mapping (decoded JSON and Avro give dicts), or a new empty one."""
    if type(value) is dict:
        return value
    return dict(value) if is_mapping(value) else {}


def pick(objs: tuple[Mapping[str, Any], ...], names: tuple[str, ...]) -> str | None:
    """The first non-empty text among `obj.name` for each object, each name in turn."""
    for source in objs:
        table: dict[str, Any] = source if type(source) is dict else dict(source)
        for name in names:
            value = table.get(name)
            if value is None:
                continue
            found = value.strip() if type(value) is str else text(value)
            if found:
                return found
    return None


def _non_empty(first: dict[str, Any], second: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The two objects in order, the empty ones left out (no generator: compiled, one a record)."""
    if first:
        return (first, second) if second else (first,)
    return (second,) if second else ()


class Track:
    """The objects of one track call that the paths of docs/dialects.md#segment run through."""

    __slots__ = ("context", "ctraits", "fb", "places", "props", "traits", "traits_objs")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.traits = traits = obj(payload.get("traits"))
        self.context = context = obj(payload.get("context"))
        self.ctraits = ctraits = obj(context.get("traits"))
        self.props = obj(payload.get("properties"))
        integrations = obj(payload.get("integrations"))
        self.fb = (obj(integrations.get(INTEGRATION_KEYS[0])), obj(integrations.get(INTEGRATION_KEYS[1])))
        # traits, context.traits (the empty ones left out: fewer lookups), then their addresses
        self.traits_objs = _non_empty(traits, ctraits)
        self.places = self.traits_objs + _non_empty(obj(traits.get("address")), obj(ctraits.get("address")))

    def integration(self, name: str) -> Any:
        """`integrations.<FB>.<name>`, the first non-empty of the two keys."""
        for fb in self.fb:
            value = fb.get(name)
            if not is_empty(value):
                return value
        return None

    def external_ids(self, id_type: str) -> list[str]:
        """ids of the `context.externalId` entries of type `id_type` (any case)."""
        entries = self.context.get("externalId")
        if not isinstance(entries, list):
            return []
        found = []
        for entry in entries:
            if is_mapping(entry) and str(entry.get("type", "")).lower() == id_type:
                value = text(entry.get("id"))
                if value:
                    found.append(value)
        return found


def raw_user(track: Track, payload: dict[str, Any], event_ms: int) -> dict[str, list[str]]:
    traits, ctraits, context = track.traits, track.ctraits, track.context
    both = track.traits_objs
    first_name, last_name = pick(both, FIRST_NAMES), pick(both, LAST_NAMES)
    if not (first_name and last_name):  # else `name`: first word → fn, last word → ln
        words = (pick(both, ("name",)) or "").split()
        first_name = first_name or (words[0] if words else None)
        last_name = last_name or (words[-1] if len(words) > 1 else None)
    email = pick((traits, ctraits, track.props), ("email",))
    raw: dict[str, list[str]] = {
        "external_id": one(
            text(payload.get("userId")) or pick(both, ID_NAMES) or text(payload.get("anonymousId"))
        ),
        "em": [email] if email else track.external_ids("email"),
        "ph": one(pick((traits, ctraits, track.props), ("phone",))),
        "ge": one(pick(both, ("gender",))),
        "db": one(pick(both, BIRTHDAY_NAMES)),
        "fn": one(first_name),
        "ln": one(last_name),
    }
    for key, names in ADDRESS.items():
        raw[key] = one(pick(track.places, names))
    raw["madid"] = one(text(obj(context.get("device")).get("advertisingId")))
    raw["client_user_agent"] = one(text(context.get("userAgent")))
    raw["client_ip_address"] = one(text(context.get("ip")))
    raw["fbp"] = one(text(context.get("fbp")))
    raw["fbc"] = one(text(context.get("fbc")) or fbc_from_url(obj(context.get("page")).get("url"), event_ms))
    lead_ids = track.external_ids("leadid")
    raw["lead_id"] = lead_ids[:1] or one(text(track.integration("leadId")))
    return raw


def fbc_from_url(url: Any, event_ms: int) -> str | None:
    """`fb.1.<event ms>.<fbclid>` from the page URL's query; a malformed URL is ignored."""
    if not isinstance(url, str) or "fbclid=" not in url:
        return None
    try:
        fbclid = parse_qs(urlsplit(url).query).get("fbclid")
    except ValueError:
        return None
    return f"fb.1.{event_ms}.{fbclid[0].strip()}" if fbclid and fbclid[0].strip() else None


def event_ms_of(payload: dict[str, Any], ctx: RecordContext) -> int:
    """timestamp, else originalTimestamp (the first that is a time), else the Kafka record's."""
    for key in ("timestamp", "originalTimestamp"):
        value = payload.get(key)
        if value is None:
            continue
        try:
            found = parse_time_ms(value)
        except (OverflowError, ValueError):  # digits beyond a float, years beyond datetime
            found = None
        if found is not None:
            return found
    return ctx.timestamp_ms


def ldu_code(value: Any) -> int | None:
    code = number(value)
    return int(code) if code is not None and code.is_integer() and 0 <= code < MAX_SAFE_INT else None


def ldu(track: Track, dest: DestinationSettings) -> dict[str, Any]:
    """`[[options], country, state]` from integrations.<FB> or context, when LDU is on."""
    mode = dest.limited_data_use
    if mode is False or mode == "never":
        return {}
    options = track.integration("dataProcessingOptions")
    if options is None:
        options = track.context.get("dataProcessingOptions")
    if not isinstance(options, list) or not options:
        # on but absent: explicitly no LDU; `when_location_known` needs the location
        return {} if mode == "when_location_known" else {"data_processing_options": []}
    head = options[0]
    chosen = head if isinstance(head, list) else [head]
    out: dict[str, Any] = {"data_processing_options": [t for t in map(text, chosen) if t]}
    for index, suffix in ((1, "country"), (2, "state")):
        code = ldu_code(options[index]) if len(options) > index else None
        if code is not None:
            out[f"data_processing_options_{suffix}"] = code
    return out
