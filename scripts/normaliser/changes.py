"""What changed between two normalised specs, each change classified breaking or additive. Plain data, no I/O.

No well-kept breaking-change tool for OpenAPI installs and runs here (oasdiff is Go-only), so this is
a small classifier over the two documents as `make` writes them. It compares, per operation: the
operation itself, its endpoint metadata (`x-fal-endpoint`), and the request and response fields
(nested ones as `parent.child`, list items as `parent[]`): presence, type, required-ness, enum values,
default and range (minimum, maximum, minItems, maxItems, minLength, maxLength); and the document's own
extensions (`x-fal-sync`, ...).

What is breaking depends on the side. A request change is breaking when a call that worked may now be
refused or mean something else: a field or enum value removed (a rename is a removal and an
addition), a range narrowed, a field newly required, a type changed, a default changed or removed.
A response change is breaking when a client reading it may now fail: a field removed or no longer
required, a type changed, an enum value added (the generated models refuse unknown values), a range
widened. An operation removed is breaking, and so is a document extension removed or changed.
Everything else is additive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["breaking", "additive"]
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Lower bounds: raising one narrows. Upper bounds: lowering one narrows.
_LOWER = ("minimum", "minItems", "minLength")
_UPPER = ("maximum", "maxItems", "maxLength")
_MAX_DEPTH = 6


@dataclass(frozen=True)
class Change:
    """One difference: where it is, what it is, and whether it breaks existing callers."""

    kind: Kind
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.what}"


@dataclass(frozen=True)
class FieldShape:
    """The comparable facts of one field (or of a whole body, with the name `(body)`)."""

    type: str | None
    required: bool
    enum: tuple[str, ...] | None
    default: Any
    has_default: bool
    bounds: tuple[tuple[str, Any], ...]


def _resolve(document: dict[str, Any], schema: Any, depth: int = 0) -> dict[str, Any]:
    """The schema with `$ref` followed and `allOf` members merged into one (siblings win)."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return {}
    if "$ref" in schema:
        target: Any = document
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        resolved = _resolve(document, target, depth + 1)
        return {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for member in schema["allOf"]:
            one = _resolve(document, member, depth + 1)
            merged = {**merged, **one, "properties": {**merged.get("properties", {}), **one.get("properties", {})}}
            merged["required"] = [*merged.get("required", []), *one.get("required", [])]
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return {**merged, **rest}
    return schema


def _shape(schema: dict[str, Any], required: bool) -> FieldShape:
    enum = schema.get("enum")
    return FieldShape(
        type=schema.get("type"),
        required=required,
        enum=tuple(str(v) for v in enum) if isinstance(enum, list) else None,
        default=schema.get("default"),
        has_default="default" in schema,
        bounds=tuple((b, schema[b]) for b in (*_LOWER, *_UPPER) if b in schema),
    )


def fields(document: dict[str, Any], schema: Any, prefix: str = "", depth: int = 0) -> dict[str, FieldShape]:
    """Every field of a body schema by dotted name; the body itself is `(body)`."""
    resolved = _resolve(document, schema)
    out: dict[str, FieldShape] = {}
    if not prefix:
        out["(body)"] = _shape(resolved, True)
    if depth > _MAX_DEPTH:
        return out
    required = set(resolved.get("required", []))
    for name, sub in (resolved.get("properties") or {}).items():
        full = f"{prefix}{name}"
        child = _resolve(document, sub)
        out[full] = _shape(child, name in required)
        out.update(_nested(document, child, full, depth))
    return out


def _nested(document: dict[str, Any], schema: dict[str, Any], name: str, depth: int) -> dict[str, FieldShape]:
    out: dict[str, FieldShape] = {}
    if schema.get("properties"):
        out.update({k: v for k, v in fields(document, schema, f"{name}.", depth + 1).items() if k != "(body)"})
    if isinstance(schema.get("items"), dict):
        items = _resolve(document, schema["items"])
        out[f"{name}[]"] = _shape(items, True)
        out.update(_nested(document, items, f"{name}[]", depth + 1))
    return out


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Operations by `METHOD /path`."""
    return {
        f"{method.upper()} {path}": item[method]
        for path, item in (document.get("paths") or {}).items()
        for method in _METHODS
        if isinstance(item, dict) and isinstance(item.get(method), dict)
    }


def _bodies(document: dict[str, Any], operation: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(label, schema) of the JSON request body, of the endpoint's output (what its result answers, named by
    `x-fal-endpoint.output_schema`) and of each JSON response."""
    request = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "schema" in request:
        yield "request", request["schema"]
    output = (operation.get("x-fal-endpoint") or {}).get("output_schema")
    if output:
        yield "output", {"$ref": f"#/components/schemas/{output}"}
    for code, response in sorted((operation.get("responses") or {}).items()):
        resolved = _resolve(document, response)
        media = (resolved.get("content") or {}).get("application/json", {})
        if "schema" in media:
            yield f"response {code}", media["schema"]


def _bound_changes(old: FieldShape, new: FieldShape) -> Iterator[tuple[bool, str]]:
    """(narrowed, text) for each bound that changed."""
    before, after = dict(old.bounds), dict(new.bounds)
    for bound in sorted(set(before) | set(after)):
        if before.get(bound) == after.get(bound):
            continue
        if bound not in before:
            yield True, f"{bound} {after[bound]!r} added (range narrowed)"
        elif bound not in after:
            yield False, f"{bound} {before[bound]!r} removed (range widened)"
        else:
            narrowed = (after[bound] > before[bound]) == (bound in _LOWER)
            word = "narrowed" if narrowed else "widened"
            yield narrowed, f"{bound} {before[bound]!r} -> {after[bound]!r} (range {word})"


def _field_changes(where: str, old: FieldShape, new: FieldShape, request: bool) -> Iterator[Change]:
    def change(breaking: bool, what: str) -> Change:
        return Change("breaking" if breaking else "additive", where, what)

    if old.type != new.type:
        yield change(True, f"type {old.type!r} -> {new.type!r}")
    if old.required != new.required:
        now = "required" if new.required else "optional"
        yield change(new.required if request else not new.required, f"now {now}")
    if old.enum is None and new.enum is not None:
        yield change(request, f"now limited to the values {list(new.enum)}")
    elif old.enum is not None and new.enum is None:
        yield change(not request, f"no longer limited to the values {list(old.enum)}")
    elif old.enum is not None and new.enum is not None:
        before, after = old.enum, new.enum
        removed = [v for v in before if v not in after]
        added = [v for v in after if v not in before]
        renamed = " (renamed?)" if removed and added else ""
        for value in removed:
            yield change(request, f"enum value {value!r} removed{renamed}")
        for value in added:
            yield change(not request, f"enum value {value!r} added")
    if (old.has_default, old.default) != (new.has_default, new.default):
        if not old.has_default:
            yield change(False, f"default {new.default!r} added")
        elif not new.has_default:
            yield change(request, f"default {old.default!r} removed")
        else:
            yield change(request, f"default {old.default!r} -> {new.default!r}")
    for narrowed, what in _bound_changes(old, new):
        yield change(narrowed == request, what)


def _endpoint_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    if new and not old:
        yield Change(
            "additive", where, "x-fal-endpoint added (" + ", ".join(f"{k}={v!r}" for k, v in new.items()) + ")"
        )
        return
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key not in old:
            yield Change("additive", where, f"x-fal-endpoint.{key} {new[key]!r} added")
        elif key not in new:
            yield Change("breaking", where, f"x-fal-endpoint.{key} {old[key]!r} removed")
        else:
            yield Change("breaking", where, f"x-fal-endpoint.{key} {old[key]!r} -> {new[key]!r}")


def endpoints_changed(changes: list[Change], document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(changed, unchanged): the endpoints whose submit operation, input or output any change touches, and the
    rest. Every run prints both, so that adding or re-rendering one endpoint's document shows that it touched no
    other endpoint (each has schemas of its own unless overrides/ declare a share)."""
    submits = [f"POST {path}" for path, item in (document.get("paths") or {}).items() if "post" in (item or {})]
    changed = [s for s in submits if any(c.where == s or c.where.startswith(f"{s} ") for c in changes)]
    return [s.removeprefix("POST /") for s in changed], [s.removeprefix("POST /") for s in submits if s not in changed]


def compare(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:  # noqa: PLR0912 - one branch per kind of change
    """Every change from `old` to `new` (None: no previous spec, everything is new), in document order."""
    before = operations(old) if old else {}
    after = operations(new)
    changes: list[Change] = []
    for key in sorted(k for k in {*(old or {}), *new} if k.startswith("x-")):
        was, now = (old or {}).get(key), new.get(key)
        if was != now:
            what = "added" if was is None else "removed" if now is None else "changed"
            changes.append(Change("additive" if was is None else "breaking", "(document)", f"{key} {what}"))
    for name in before:
        if name not in after:
            changes.append(Change("breaking", name, f"operation {before[name].get('operationId')!r} removed"))
    for name, operation in after.items():
        if name not in before:
            changes.append(Change("additive", name, f"operation {operation.get('operationId')!r} added"))
            continue
        assert old is not None
        previous = before[name]
        if previous.get("operationId") != operation.get("operationId"):
            what = f"operationId {previous.get('operationId')!r} -> {operation.get('operationId')!r}"
            changes.append(Change("breaking", name, what))
        changes += _endpoint_changes(name, previous.get("x-fal-endpoint") or {}, operation.get("x-fal-endpoint") or {})
        old_bodies, new_bodies = dict(_bodies(old, previous)), dict(_bodies(new, operation))
        for label in [*old_bodies, *(b for b in new_bodies if b not in old_bodies)]:
            request = label == "request"
            if label == "output" and (label not in old_bodies or label not in new_bodies):
                continue  # x-fal-endpoint.output_schema added or removed: reported with the metadata
            if label not in new_bodies:
                changes.append(Change("breaking" if not request else "additive", f"{name} {label}", "body removed"))
                continue
            if label not in old_bodies:
                changes.append(Change("additive" if not request else "breaking", f"{name} {label}", "body added"))
                continue
            old_fields, new_fields = fields(old, old_bodies[label]), fields(new, new_bodies[label])
            for field_name, shape in old_fields.items():
                where = f"{name} {label} `{field_name}`"
                if field_name not in new_fields:
                    changes.append(Change("breaking", where, "field removed"))
                else:
                    changes += _field_changes(where, shape, new_fields[field_name], request)
            for field_name, shape in new_fields.items():
                if field_name in old_fields:
                    continue
                where = f"{name} {label} `{field_name}`"
                newly_required = request and shape.required
                what = f"field added ({'required' if shape.required else 'optional'})"
                changes.append(Change("breaking" if newly_required else "additive", where, what))
    return changes


def major(document: dict[str, Any] | None) -> int:
    """The major part of `info.version` (0 when there is none)."""
    version = str(((document or {}).get("info") or {}).get("version", "0"))
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


CHANGELOG_TITLE = "# Changes to the API (specs/openapi.yaml)"
CHANGELOG_INTRO = (
    "Written by `make` (scripts/regenerate.py) whenever the spec changes, newest first: each change to an operation,\n"
    "field, enum value, default, range, required-ness or response field, classified breaking or additive\n"
    "(scripts/normaliser/changes.py says which is which). The digest is the spec's SHA-256, so `make check` can tell\n"
    "a changelog that does not describe the committed spec."
)
_DIGEST = "spec sha256 "


def entry(old: dict[str, Any] | None, new: dict[str, Any], digest: str, changes: list[Change], note: str) -> str:
    """One changelog section for a regeneration."""
    before = ((old or {}).get("info") or {}).get("version", "(none)")
    after = (new.get("info") or {}).get("version")
    breaking = sum(c.kind == "breaking" for c in changes)
    head = f"## {before} -> {after}, {_DIGEST}{digest[:16]}"
    summary = f"{breaking} breaking, {len(changes) - breaking} additive" + (f"; {note}" if note else "")
    lines = [head, "", summary, ""]
    lines += [f"- **{c.kind}** {c.where}: {c.what}" for c in changes] or [
        "- no change to operations, fields, values, defaults, ranges or required-ness (wording or examples only)"
    ]
    return "\n".join(lines) + "\n"


def with_entry(changelog: str | None, section: str) -> str:
    """The changelog with `section` as its newest entry."""
    body = ""
    if changelog and "\n## " in changelog:
        body = changelog[changelog.index("\n## ") + 1 :]
    return f"{CHANGELOG_TITLE}\n\n{CHANGELOG_INTRO}\n\n{section}" + (f"\n{body}" if body else "")


def latest_digest(changelog: str | None) -> str | None:
    """The spec digest of the newest entry (its first 16 hex digits), or None."""
    for line in (changelog or "").splitlines():
        if line.startswith("## ") and _DIGEST in line:
            return line.split(_DIGEST, 1)[1].strip()
    return None
