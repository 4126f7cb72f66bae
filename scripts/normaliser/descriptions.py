"""Facts that documents state in words: defaults, ranges and value lists inside descriptions.

Aggregators state most facts only in prose (`Default: 3.5 Range: 1-20`, `Supported: default, png,
jpeg`, `默认值:3.5  范围值1-20`, `默认值:"1:1" 支持:21:9、16:9`), and fal's pages repeat theirs in
prose (`Default value: \\`3.5\\``). Every such statement is read, so the merge can report where an
aggregator's prose contradicts fal, or stops the run: a description that evidently states a default,
a range or a value list this module cannot read is an error, never skipped.

What counts as a statement (and what is left as prose) is decided by a cue word before the value:

- English cues need a colon: `Default:`, `Default value:`, `Range:`, `Range value:`, `Supported:`,
  `Supported formats:`, `Supported values:`, `Options:`, `Possible values:`, `Allowed values:`,
  `Enumerated values:` (any case). `Default is 3`, `defaults to 3`, `between 0 and 1` are prose: the
  last is as often a length ("between 2 and 3000 characters") as a range of values.
- Chinese cues that name the fact (`默认值`, `范围值`, `取值范围`, `枚举值`, `可选值`) are statements
  with or without a colon. Cues that are also ordinary words (`默认` by default, `默认为`, `范围` range,
  `取值` take a value, `支持` supports, `可选` optional, `可选如` such as) are statements when a colon
  follows them; without one they are read when a value follows at once (`默认2`, `范围1-20`,
  `支持default、png、jpeg`) and otherwise left as prose (`默认情况下`, `支持多种类型`, `可选` in brackets).
- A list ending the description after a colon, every item quoted (`Image output format: "jpeg",
  "png"`, `图片输出格式:"jpeg","png"`), is a value list without a cue.
- Numbers in prose without a cue are not a range: "1 being the most strict and 5 being the most
  permissive" says what two values mean, not the bounds (fal's own safety_tolerance enum goes to 6).
- File types a URL field accepts (`Accepted file types: jpg, png`, `接受的文件类型:jpg、png`) are read
  and reported as not being values of the field (they describe the file behind the URL).

A statement is read up to its value; what follows must end it (the end of the text, punctuation, or
the next cue): `Default: the input image's width` stops the run rather than read `the`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import NOT_STATED, FieldFacts, SourceError


class UnreadableStatement(ValueError):
    """A description states a fact (its cue says so) whose value cannot be read."""


@dataclass
class WordedFacts:
    """What one description states in words."""

    default: Any = NOT_STATED
    minimum: float | int | None = None
    maximum: float | int | None = None
    enum: list[Any] | None = None
    notes: list[str] = field(default_factory=list)


# Cue words, each a named group: <kind>_<strength>. Strong cues always start a statement; weak ones
# (Chinese words that are also ordinary words) only with a colon or a value right after them. At one
# position the first alternative wins, so longer cues come first.
_CUE = re.compile(
    r"(?P<files_s>(?i:\b(?:accepted|supported|allowed)\s+file\s+types?\s*[:：]"
    r"|\baccepts\s+the\s+following\s+file\s+types\s*[:：])"
    r"|(?:接受|支持)的文件类型|文件类型\s*[:：])"
    r"|(?P<default_s>(?i:\bdefault(?:\s+value)?\s*[:：])|默认值)"
    r"|(?P<range_s>(?i:\brange(?:\s+value)?\s*[:：])|范围值|取值范围)"
    r"|(?P<list_s>(?i:\b(?:supported(?:\s+(?:formats|values|options))?|enumerated\s+values|possible\s+values"
    r"|allowed\s+values|options)\s*[:：])|枚举值|可选值)"
    r"|(?P<default_w>默认为|默认)"
    r"|(?P<range_w>范围|取值)"
    r"|(?P<list_w>可选如|支持|可选)"
)
_COLON = re.compile(r"\s*[:：]")
_SPACE = re.compile(r"\s*")
# One value: backticked, quoted ("…", “…”, '…'), or a bare ASCII token (`3.5`, `1:1`, `landscape_4_3`).
_VALUE = re.compile(
    r"`(?P<code>[^`\n]*)`|\"(?P<dq>[^\"\n]*)\"|“(?P<cq>[^”\n]*)”|'(?P<sq>[^'\n]*)'|(?P<bare>[\w.:+\-]+)"
)
_BARE_ASCII = re.compile(r"[A-Za-z0-9_.:+\-]+")
# Between two values of a list; `或`/`or`/`and` only inside a list (after its cue).
_SEPARATOR = re.compile(r"\s*(?:[,，、]|\bor\b|\band\b|或|和)\s*")
# A range: `1-20`, `1 ~ 20`, `1` to `20`, 1到20, `1 <= x <= 20`, [1, 20]; the bounds are numbers.
_BOUNDS = re.compile(r"`?(?P<low>-?\d+(?:\.\d+)?)`?\s*(?:-|~|～|—|–|\bto\b|到|至)\s*`?(?P<high>-?\d+(?:\.\d+)?)`?")
_BETWEEN = re.compile(r"`?\s*(?P<low>-?\d+(?:\.\d+)?)\s*<=?\s*x\s*<=?\s*(?P<high>-?\d+(?:\.\d+)?)\s*`?")
_BRACKETS = re.compile(r"\[\s*(?P<low>-?\d+(?:\.\d+)?)\s*,\s*(?P<high>-?\d+(?:\.\d+)?)\s*\]")
# An annotation in brackets after a list item (可选值 lists `user` then what it means, in full-width brackets).
_ANNOTATION = re.compile(r"\s*(?:（[^）]*）|\([^)]*\))")
# What may follow a statement's value: the end, punctuation, or (after spaces) another cue.
_END = re.compile(r"\s*(?:$|[.,;!?。，；！？、）)（(\]])")
_QUOTED_LIST = re.compile(r"[:：]\s*((?:\"[^\"]+\"\s*[,，、]\s*)+\"[^\"]+\")\s*[.。]?\s*$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _kind(match: re.Match[str]) -> tuple[str, bool]:
    name = next(k for k, v in match.groupdict().items() if v is not None)
    kind, strength = name.split("_")
    return kind, strength == "s"


def _one_value(text: str, position: int) -> tuple[str, str, int] | None:
    """The value at `position` as (how it was written, its text, end offset); None if there is none."""
    m = _VALUE.match(text, position)
    if not m:
        return None
    for group in ("code", "dq", "cq", "sq"):
        if m.group(group) is not None:
            return group, m.group(group), m.end()
    bare = m.group("bare")
    ascii_part = _BARE_ASCII.match(bare)
    if not ascii_part or ascii_part.end() == 0:
        return None  # `\w` also matches Chinese: 默认情况下 is not a value
    end = m.start() + ascii_part.end()
    token = ascii_part.group(0)
    if token.endswith(".") and len(token) > 1:  # "Default: 1. Range: 1-4": the period ends the sentence
        token, end = token[:-1], end - 1
    return "bare", token, end


def _ended(text: str, position: int) -> bool:
    """Whether a statement's value may end at `position` (the end, punctuation, or another cue)."""
    if _END.match(text, position):
        return True
    after = _SPACE.match(text, position)
    return bool(after and _CUE.match(text, after.end()))


def _number(raw: str, json_type: str | None, what: str) -> float | int:
    if not _NUMBER.fullmatch(raw):
        raise UnreadableStatement(f"{what} {raw!r} is not a number")
    if json_type == "integer":
        if "." in raw and not float(raw).is_integer():
            raise UnreadableStatement(f"{what} {raw!r} is not an integer (the field is an integer)")
        return int(float(raw))
    if json_type == "number":
        return float(raw)
    return float(raw) if "." in raw else int(raw)


def _decoded(how: str, raw: str) -> Any:
    """A value as written: JSON between backticks (fal writes `"jpeg"`, `3.5`, `false`, `[]`), else the text."""
    if how == "code":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # fal also writes a bare word between backticks: `landscape_4_3`
    return None if how == "bare" and raw in ("null", "None") else raw


def _as_boolean(value: Any, text: str, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise UnreadableStatement(f"{what} {text!r} is not true or false")


def _as_json(value: Any, text: str, json_type: str, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise UnreadableStatement(f"{what} {text!r} is not a JSON {json_type}") from err
    if not isinstance(value, list if json_type == "array" else dict):
        raise UnreadableStatement(f"{what} {text!r} is not a JSON {json_type}")
    return value


def _typed(how: str, raw: str, json_type: str | None, what: str) -> Any:
    """A value as its field's type: `3.5` for a number, `"1:1"` for a string, True for `true`."""
    value = _decoded(how, raw)
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    if json_type in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise UnreadableStatement(f"{what} {text!r} is not a number")
        return _number(str(value), json_type, what)
    if json_type == "boolean":
        return _as_boolean(value, text, what)
    if json_type in ("array", "object"):
        return _as_json(value, text, json_type, what)
    if json_type == "string":
        return value if isinstance(value, str) else text
    return value


def _read_default(text: str, position: int, json_type: str | None) -> tuple[Any, int]:
    found = _one_value(text, position)
    if found is None:
        raise UnreadableStatement("no value after it")
    how, raw, end = found
    return _typed(how, raw, json_type, "the default"), end


def _read_range(text: str, position: int, json_type: str | None) -> tuple[tuple[float | int, float | int], int]:
    # `1-20`, `1 <= x <= 2000` (取值范围), `[0, 1]`
    m = _BETWEEN.match(text, position) or _BOUNDS.match(text, position) or _BRACKETS.match(text, position)
    if not m:
        raise UnreadableStatement("expected two numbers such as `1-20` or `1` to `20`")
    low, high, end = m.group("low"), m.group("high"), m.end()
    if json_type not in (None, "integer", "number"):
        raise UnreadableStatement(f"a range of numbers on a field of type {json_type}")
    bounds = _number(low, json_type, "the lower bound"), _number(high, json_type, "the upper bound")
    if bounds[0] > bounds[1]:
        raise UnreadableStatement(f"the lower bound {low} is above the upper bound {high}")
    return bounds, end


def _read_list(text: str, position: int, json_type: str | None, kind: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    end = position
    while True:
        found = _one_value(text, end)
        if found is None:
            if not items:
                raise UnreadableStatement("no values after it")
            break
        how, raw, end = found
        if kind == "files":
            items.append(raw)
        elif json_type in ("array", "object", "boolean"):
            raise UnreadableStatement(f"a list of values on a field of type {json_type}")
        else:
            items.append(_typed(how, raw, json_type, "the value"))
        if annotation := _ANNOTATION.match(text, end):
            end = annotation.end()
        separator = _SEPARATOR.match(text, end)
        if not separator or _one_value(text, separator.end()) is None:
            break
        end = separator.end()
    return items, end


def read_statements(text: str, json_type: str | None) -> WordedFacts:
    """Read every default, range and value list a description states (see the module's rules).

    `json_type` is the field's JSON type (None when unknown, e.g. a union): values are read as that
    type. Raises UnreadableStatement naming what could not be read.
    """
    worded = WordedFacts()
    position = 0
    while cue := _CUE.search(text, position):
        kind, strong = _kind(cue)
        start = cue.end()
        if colon := _COLON.match(text, start):  # a weak cue with a colon is a statement
            strong, start = True, colon.end()
        start = _SPACE.match(text, start).end()  # type: ignore[union-attr]  # \s* always matches
        try:
            end = _read_statement(worded, text, start, json_type, kind)
            if not _ended(text, end):
                following = text[end:].strip().split("\n", 1)[0][:40]
                raise UnreadableStatement(f"it goes on with {following!r} after the value")
        except UnreadableStatement as err:
            if not strong:
                position = cue.end()  # an ordinary word after all (默认情况下, 支持多种类型)
                continue
            statement = text[cue.start() :].split("\n", 1)[0][:80]
            raise UnreadableStatement(f"{statement!r} states a {_NOUNS[kind]} that cannot be read: {err}") from err
        position = end
    if worded.enum is None and (m := _QUOTED_LIST.search(text)):
        worded.enum = [_typed("dq", v, json_type, "the value") for v in re.findall(r"\"([^\"]+)\"", m.group(1))]
    if worded.enum is not None:
        repeated = sorted({str(v) for v in worded.enum if worded.enum.count(v) > 1})
        if repeated:
            raise UnreadableStatement(f"the value list names {', '.join(repeated)} twice")
        if worded.default not in (NOT_STATED, None) and str(worded.default) not in map(str, worded.enum):
            raise UnreadableStatement(f"the default {worded.default!r} is not among the values it lists {worded.enum}")
    return worded


_NOUNS = {"default": "default", "range": "range", "list": "value list", "files": "list of file types"}


def _read_statement(worded: WordedFacts, text: str, start: int, json_type: str | None, kind: str) -> int:
    """Read one statement's value into `worded`; return where the value ends."""
    if kind == "default":
        value, end = _read_default(text, start, json_type)
        if worded.default is not NOT_STATED and worded.default != value:
            raise UnreadableStatement(f"a second default {value!r} (the first is {worded.default!r})")
        worded.default = value
    elif kind == "range":
        (low, high), end = _read_range(text, start, json_type)
        if worded.minimum is not None and (worded.minimum, worded.maximum) != (low, high):
            raise UnreadableStatement(f"a second range {low}-{high}")
        worded.minimum, worded.maximum = low, high
    elif kind == "list":
        values, end = _read_list(text, start, json_type, kind)
        if worded.enum is not None and worded.enum != values:
            raise UnreadableStatement(f"a second value list {values}")
        worded.enum = values
    else:
        files, end = _read_list(text, start, json_type, kind)
        worded.notes.append(
            f"lists the file types it accepts ({', '.join(files)}): they describe the file behind the URL, "
            "not values of the field, and are not read"
        )
    return end


def _where(facts: FieldFacts, path: Path | str | None) -> Path | str:
    # Without a path (a caller that does not pass one) the message still names the field.
    return path if path is not None else f"<description of {facts.name}>"


def facts_from_description(
    facts: FieldFacts, json_type: str | None, *, path: Path | str | None = None, line: int | None = None
) -> list[str]:
    """Fill `facts` with the default, range and value list its description states; return notes to report.

    Raises SourceError (file, line, field and statement) when the description evidently states a
    fact that cannot be read. Pass `path` and `line` so that the error names them.
    """
    if not facts.description:
        return []
    try:
        worded = read_statements(facts.description, json_type)
    except UnreadableStatement as err:
        raise SourceError(
            _where(facts, path), line if line is not None else facts.line, f"{facts.name}: {err}"
        ) from err
    if worded.default is not NOT_STATED:
        facts.default = worded.default
    if worded.minimum is not None:
        facts.minimum, facts.maximum = worded.minimum, worded.maximum
    if worded.enum is not None:
        facts.enum = worded.enum
    return [f"{facts.name}: {note}" for note in worded.notes]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return bool(a == b)


def apply_description(
    facts: FieldFacts, json_type: str | None, path: Path | str, line: int | None, description: str | None = None
) -> list[str]:
    """Read what `description` (by default `facts.description`) states in words and check it against `facts`.

    A fact the document states nowhere else is added; one it also states elsewhere (an attribute, a
    `Default:` bullet) must agree, or the run stops naming the file, the line and both values.
    Returns notes to report (see `facts_from_description`).
    """
    worded = FieldFacts(name=facts.name, line=facts.line, description=description or facts.description)
    notes = facts_from_description(worded, json_type, path=path, line=line)
    for attribute in ("default", "minimum", "maximum", "enum"):
        said = getattr(worded, attribute)
        if said is NOT_STATED or (said is None and attribute != "default"):
            continue
        stated = getattr(facts, attribute)
        if stated is NOT_STATED or (stated is None and attribute != "default"):
            setattr(facts, attribute, said)
        elif not _same(stated, said):
            raise SourceError(
                path, line, f"{facts.name}: the document states {attribute} {stated!r} but its description {said!r}"
            )
    return notes
