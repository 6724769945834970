"""YAML as Docker Compose reads it: PyYAML's safe loader and dumper with the plain-scalar rules of Go's yaml.v3.

PyYAML follows YAML 1.1; Compose reads with yaml.v3, which is mostly YAML 1.2. They disagree on what an unquoted
scalar is, and dockext writes the compose file it read back for Compose, so both directions matter:

* reading, a plain scalar gets the type yaml.v3 gives it (:func:`go_tag`): ``yes``/``no``/``on``/``off`` and
  ``22:22`` are strings (YAML 1.1: a boolean, the number 1342 in base 60); ``08``, ``1e3`` and ``1_0.5`` are
  numbers (strings to YAML 1.1); ``0o17``, ``0X1F`` and ``017`` are numbers; ``1e999`` is a string (out of range);
* writing, a string is quoted whenever yaml.v3 would read it plain as anything else, so ``'0o17'`` and ``'1e3'``
  stay strings, and a plain ``yes`` stays plain;
* a date or timestamp (``2001-12-14``) is a :class:`Timestamp`: a string here, written back plain, so that
  Compose reads it as the author wrote it (it refuses a timestamp where it wants a string).
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any, Final

import yaml

__all__ = ["Timestamp", "dump", "go_tag", "load"]

STR: Final = "tag:yaml.org,2002:str"
INT: Final = "tag:yaml.org,2002:int"
FLOAT: Final = "tag:yaml.org,2002:float"
BOOL: Final = "tag:yaml.org,2002:bool"
NULL: Final = "tag:yaml.org,2002:null"
TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"

# yaml.v3's resolve table: the words it knows (resolve.go), every other word is a string
_WORDS: Final[dict[str, tuple[str, Any]]] = {
    **{w: (BOOL, True) for w in ("true", "True", "TRUE")},
    **{w: (BOOL, False) for w in ("false", "False", "FALSE")},
    **{w: (NULL, None) for w in ("", "~", "null", "Null", "NULL")},
    **{w: (FLOAT, math.nan) for w in (".nan", ".NaN", ".NAN")},
    **{w: (FLOAT, math.inf) for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{w: (FLOAT, -math.inf) for w in ("-.inf", "-.Inf", "-.INF")},
    "<<": ("tag:yaml.org,2002:merge", "<<"),
}
# strconv.ParseInt(s, 0, 64) after yaml.v3 took the underscores out
_GO_INT: Final = re.compile(r"[-+]?(?:0[bB][01]+|0[oO][0-7]+|0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
# yaml.v3's yamlStyleFloat, also after the underscores are out
_GO_FLOAT: Final = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
# after a leading ".", yaml.v3 calls strconv.ParseFloat on the text as it is (no underscores allowed)
_DOT_FLOAT: Final = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
# yaml.v3's timestamp layouts: 2006-1-2, then T/t with a zone, or a space and no zone
_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:(?:[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.[0-9]{1,9})?(?:Z|[-+][0-9]{2}:[0-9]{2}))"
    r"|(?: ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.[0-9]{1,9})?))?")
_INT64: Final = range(-(2**63), 2**64)  # ParseInt, then ParseUint


def go_tag(text: str) -> tuple[str, Any]:
    """The tag and value yaml.v3 gives the plain (unquoted) scalar ``text``."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[0]
    if first == ".":
        return (FLOAT, float(text)) if _DOT_FLOAT.fullmatch(text) else (STR, text)
    if not (first.isdigit() and first.isascii()) and first not in "+-":
        return STR, text
    if _timestamp(text):
        return TIMESTAMP, Timestamp(text)
    plain = text.replace("_", "")
    if _GO_INT.fullmatch(plain):
        value = _int(plain)
        if value in _INT64:
            return INT, value
    if _GO_FLOAT.fullmatch(plain):
        number = float(plain)
        if not math.isinf(number):  # ParseFloat refuses what is out of range: yaml.v3 keeps the string
            return FLOAT, number
    return STR, text


def _int(plain: str) -> int:
    sign, digits = (-1, plain[1:]) if plain[0] == "-" else (1, plain.lstrip("+"))
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return sign * int(digits, 8)  # 017: YAML 1.1's octal, which yaml.v3 still reads
    return sign * int(digits, 0)


def _timestamp(text: str) -> bool:
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return False
    g = m.groups()
    clock = next(((int(h), int(mi), int(s)) for h, mi, s in (g[3:6], g[6:9]) if h is not None), (0, 0, 0))
    try:
        datetime.datetime(int(g[0]), int(g[1]), int(g[2]), *clock)  # time.Parse checks the ranges too
    except ValueError:
        return False
    return True


class Timestamp(str):
    """A plain scalar yaml.v3 reads as a timestamp: a string to dockext, written back plain."""

    __slots__ = ()


class _GoResolver(yaml.resolver.Resolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return go_tag(value)[0]
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


class _Loader(yaml.SafeLoader, _GoResolver):
    pass


class _Dumper(yaml.SafeDumper, _GoResolver):
    pass


def _construct(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = loader.construct_scalar(node)
        got_tag, got = go_tag(str(value))
        if got_tag == tag:
            return got
        return SAFE.get(tag, lambda _l, _n: value)(loader, node)  # an explicit tag (!!int "12"): PyYAML's way

    return construct


SAFE: Final = {tag: yaml.SafeLoader.yaml_constructors[tag] for tag in (INT, FLOAT, BOOL, NULL)}
for _tag in (INT, FLOAT, BOOL, NULL):
    _Loader.add_constructor(_tag, _construct(_tag))


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Timestamp:
    return Timestamp(loader.construct_scalar(node))


def _construct_merge(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor(TIMESTAMP, _construct_timestamp)
# "<<" merges as a key (SafeConstructor.flatten_mapping); anywhere else yaml.v3 reads it as the string
_Loader.add_constructor("tag:yaml.org,2002:merge", _construct_merge)
_Dumper.add_representer(Timestamp, lambda dumper, data: dumper.represent_scalar(TIMESTAMP, str(data)))


def load(text: bytes | str) -> Any:
    """A YAML document as Compose reads it; yaml.YAMLError if it is not YAML."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader


def dump(document: Any) -> str:
    """``document`` in YAML that Compose reads back as the same values (keys in their order)."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False)
