"""The admin API for definitions (segments, journeys, topics, stores, regions, settings)
and what they produce: segment members and sizes, enrollments, captured messages.

Definitions are sent as YAML (`application/yaml`, `text/yaml`) or JSON, exactly
as in a definitions folder, and go through the same validation as
`airspace validate`: every problem at once, with its path.

The routes with a fixed path (`/messages`, `/settings`, `/definitions/...`) come before
the generic `/{kinds}/...` ones: the router tries routes in order, and `/{kinds}` would
otherwise answer `GET /messages` with "kinds should be segments, journeys, ...".
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Annotated, Any, Literal, cast

import orjson
import yaml
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from airspace.api.admin import Page, Svc, admin_key
from airspace.domain.definitions import Document, Kind, load_documents, load_yaml
from airspace.domain.errors import InvalidInput, LimitExceeded, MalformedJson
from airspace.domain.problems import join, kind_of
from airspace.engine import definitions as engine
from airspace.store import definitions as repo
from airspace.store import journey_admin as queries

MAX_DEFINITION_BYTES = 1024 * 1024
# What a body may become once parsed: YAML aliases repeat what they point to, so a few
# kilobytes can stand for gigabytes ("billion laughs"), or for a structure that contains
# itself; both would hang or crash the parsers and the JSON encoder downstream.
MAX_EXPANDED_BYTES = 4 * MAX_DEFINITION_BYTES
MAX_DEPTH = 64
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
PLURALS: dict[str, Kind] = {
    "segments": "segment",
    "journeys": "journey",
    "topics": "topic",
    "stores": "store",
    "regions": "region",
}
KindPath = Annotated[
    Literal["segments", "journeys", "topics", "stores", "regions"],
    Path(description="What kind of definition"),
]
DefinitionId = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description="Its id")
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most items to return")]
AfterKey = Annotated[str, Query(max_length=100, description="Return items after this id (paging)")]

router = APIRouter(prefix="/admin/v1", tags=["definitions"], dependencies=[Depends(admin_key)])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


class ProblemPublic(BaseModel):
    """One problem of a definition."""

    path: str
    message: str
    level: str


class AppliedPublic(BaseModel):
    """What storing a definition did."""

    kind: str
    id: str
    action: str
    version: int
    status: str
    warnings: list[ProblemPublic]
    segments_computed: dict[str, int]


async def _document_body(request: Request) -> Any:
    """The parsed body (JSON or YAML), refused whole if it is too big or not data."""
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_DEFINITION_BYTES:
            chunks.append(chunk)
    if size > MAX_DEFINITION_BYTES:
        raise LimitExceeded(
            "request_too_large", f"a definition is at most {MAX_DEFINITION_BYTES} bytes; got {size}"
        )
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/json", ""):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedJson(f"the body is not valid JSON: {error}") from None
    elif content_type in YAML_TYPES:
        body = _yaml_body(raw)
    else:
        raise InvalidInput(
            f"send the definition with Content-Type application/yaml or application/json, "
            f"not {content_type!r}"
        )
    _check_storable(body)
    return body


def _yaml_body(raw: bytes) -> Any:
    """One YAML document as it is; several (`---`) as a list, as for validate."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"the body is not UTF-8 text: byte 0x{raw[error.start]:02x} at position {error.start}"
        ) from None
    try:
        documents = load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidInput(f"the body is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise InvalidInput(
            f"the body is nested too deeply; a definition nests at most {MAX_DEPTH} levels"
        ) from None
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise InvalidInput(f"the body has a value YAML cannot read: {error}") from None
    if not documents:
        raise InvalidInput("the body is empty; send a definition")
    return documents[0] if len(documents) == 1 else documents


def _check_storable(body: Any) -> None:
    """Refuse what cannot be stored as JSON, with its path: YAML-only types (`!!set`,
    `!!binary`), keys that are not text, NUL characters, numbers JSON cannot hold, and
    structures too deep or too big once YAML aliases are expanded."""
    budget = MAX_EXPANDED_BYTES
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "the definition"
        if depth > MAX_DEPTH:
            raise InvalidInput(
                f"{where} is nested more than {MAX_DEPTH} levels deep "
                f"(a YAML alias that contains itself?)"
            )
        if isinstance(value, dict):
            for key, inner in value.items():
                if not isinstance(key, str):
                    raise InvalidInput(
                        f"{where} has the key {key} (a {type(key).__name__}); "
                        f"keys must be text: quote it"
                    )
                _check_text(key, f"a key of {where}")
                budget -= len(key) + 4
                stack.append((inner, join(path, key), depth + 1))
        elif isinstance(value, list):
            budget -= len(value)
            stack.extend((inner, join(path, i), depth + 1) for i, inner in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
            budget -= len(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{where} is {value}; expected a finite number")
        elif (
            isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64
        ):
            raise InvalidInput(f"{where} is a number too large to store (at most 20 digits)")
        elif not isinstance(value, bool | int | float | date) and value is not None:
            raise InvalidInput(
                f"{where} is a {type(value).__name__} (a YAML tag such as !!set or !!binary); "
                f"use text, numbers, true/false, lists and mappings"
            )
        budget -= 8
        if budget < 0:
            raise LimitExceeded(
                "request_too_large",
                f"the definition expands to more than {MAX_EXPANDED_BYTES} bytes once YAML "
                f"aliases are repeated; the limit is {MAX_EXPANDED_BYTES}",
            )


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidInput(f"{where} contains the NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where} contains a lone surrogate, which is not text") from None


def _document(kind: Kind, ref: str, body: Any) -> Document:
    if isinstance(body, list):
        raise InvalidInput(
            f"a {kind} definition is one mapping (object), not a list of {len(body)}; send one "
            f"per request (validate takes several, `airspace apply` a folder)"
        )
    if not isinstance(body, dict):
        raise InvalidInput(f"a {kind} definition is a mapping (object), not {kind_of(body)}")
    if kind != "settings":
        given = body.get(kind, ref)
        if given != ref:
            raise InvalidInput(f"the path says {kind} {ref!r} but the body says {given!r}")
        body = {kind: ref, **{k: v for k, v in body.items() if k != kind}}
    return Document(kind, ref, body, f"api:{kind}/{ref}")


def _applied(db: Any, document: Document, now: Any) -> AppliedPublic:
    applied = engine.apply(db, [document], now, complete=False)
    [change] = [c for c in applied.changes if (c.kind, c.id) == (document.kind, document.id)]
    with db.read() as conn:
        current = repo.history(conn, document.kind, document.id)[0]
    return AppliedPublic(
        kind=document.kind,
        id=document.id,
        action=change.action,
        version=current.version,
        status=current.status,
        warnings=[
            ProblemPublic(path=p.path, message=p.message, level=p.level) for p in applied.warnings
        ],
        segments_computed={c.segment_id: c.members for c in applied.computed},
    )


def _valid_id(value: str) -> bool:
    """The ids `airspace validate` accepts."""
    return 0 < len(value) <= 100 and all(c.isalnum() or c in "-_." for c in value)


@router.post(
    "/definitions/validate",
    summary="Check definitions without storing them",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def validate(request: Request, services: Svc) -> list[ProblemPublic]:
    """Every problem of the given documents, checked together with what is stored."""
    body = await _document_body(request)
    items = body if isinstance(body, list) else [body]
    documents = []
    problems: list[ProblemPublic] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(
                ProblemPublic(
                    path=f"[{index}]",
                    message=f"expected a definition (a mapping), got {kind_of(item)}",
                    level="error",
                )
            )
            continue
        kind = next(
            (k for k in ("segment", "journey", "topic", "store", "region") if k in item),
            "settings",
        )
        ref = item.get(kind) if kind != "settings" else "settings"
        if not isinstance(ref, str) or not _valid_id(ref):
            problems.append(
                ProblemPublic(
                    path=f"[{index}].{kind}",
                    message="expected an id of letters, digits, '-', '_' or '.' (at most 100)",
                    level="error",
                )
            )
            continue
        documents.append(_document(cast(Kind, kind), ref, item))

    def check() -> list[ProblemPublic]:
        with services.db.read() as conn:
            everything = engine.merged_documents(conn, documents)
        _, found = load_documents(everything)
        return [ProblemPublic(path=p.path, message=p.message, level=p.level) for p in found]

    return problems + await run_in_threadpool(check)


@router.get("/definitions", summary="Every live definition (current versions)")
async def list_definitions(
    services: Svc, kind: Annotated[Kind | None, Query(description="Only this kind")] = None
) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with services.db.read() as conn:
            return [d.as_json() for d in repo.live(conn, kind)]

    return await run_in_threadpool(read)


@router.put("/settings", summary="Replace the workspace settings", openapi_extra=_BODY)
async def put_settings(request: Request, services: Svc) -> AppliedPublic:
    document = _document("settings", "settings", await _document_body(request))
    return await run_in_threadpool(_applied, services.db, document, services.clock.now())


@router.get("/settings", summary="The workspace settings with all their versions, newest first")
async def get_settings(services: Svc) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with services.db.read() as conn:
            return [d.as_json() for d in repo.history(conn, "settings", "settings")]

    return await run_in_threadpool(read)


@router.get("/segments/{ref}/members", summary="Who is in a segment now")
async def members(
    services: Svc, ref: DefinitionId, limit: Limit = 100, after: AfterKey = ""
) -> dict[str, Any]:
    items = await run_in_threadpool(queries.segment_members, services.db, ref, after, limit)
    return {"items": items, "next_after": items[-1]["profile_id"] if len(items) == limit else None}


@router.get("/segments/{ref}/sizes", summary="A segment's size now and over time")
async def sizes(services: Svc, ref: DefinitionId, limit: Limit = 100) -> dict[str, Any]:
    return await run_in_threadpool(queries.segment_sizes, services.db, ref, limit)


@router.get("/journeys/{ref}/report", summary="Enrollments by version, layer and status")
async def report(services: Svc, ref: DefinitionId) -> dict[str, Any]:
    return await run_in_threadpool(queries.journey_report, services.db, ref)


@router.get("/journeys/{ref}/enrollments", summary="A journey's enrollments")
async def enrollments(
    services: Svc,
    ref: DefinitionId,
    status: Annotated[Literal["active", "completed", "exited"] | None, Query()] = None,
    limit: Limit = 100,
    after: AfterKey = "",
) -> dict[str, Any]:
    items = await run_in_threadpool(
        queries.journey_enrollments, services.db, ref, status, after, limit
    )
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


ProfilePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]


@router.get(
    "/profiles/{profile_id}/journeys", summary="A person's segments, enrollments and candidates"
)
async def person(services: Svc, profile_id: ProfilePath) -> dict[str, Any]:
    return await run_in_threadpool(queries.person_journeys, services.db, profile_id)


@router.get("/profiles/{profile_id}/messages", summary="Messages sent to a person")
async def person_messages(
    services: Svc,
    profile_id: ProfilePath,
    limit: Limit = 100,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Page:
    items = await run_in_threadpool(queries.messages, services.db, profile_id, after_id, limit)
    return Page(items=items, next_after_id=items[-1]["id"] if len(items) == limit else None)


@router.get(
    "/profiles/{profile_id}/decisions",
    summary="The controller's decisions about a person, explained",
    description="Every decision in the period with all its candidates, rule results, "
    "scores and reasons (newest first), and `explanation`: the same in plain words in the "
    "person's time zone, with the days on which no journey proposed anything.",
)
async def person_decisions(
    services: Svc,
    profile_id: ProfilePath,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back")] = 14,
    limit: Limit = 200,
) -> dict[str, Any]:
    until = services.clock.now()
    since = until - timedelta(days=days)
    return await run_in_threadpool(
        queries.person_decisions, services.db, profile_id, since, until, limit
    )


@router.get(
    "/uplift",
    summary="What each journey's messages add, learned from the holdouts",
    description="Per journey, channel and stratum: treated and control trials and "
    "conversions, the uplift's posterior mean with a 90% credible interval, and the "
    "incremental value per message.",
)
async def uplift(services: Svc) -> list[dict[str, Any]]:
    return await run_in_threadpool(queries.uplift_report, services.db)


@router.get("/messages", summary="Messages handed to channels (the capture channel's outbox)")
async def all_messages(
    services: Svc, limit: Limit = 100, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> Page:
    items = await run_in_threadpool(queries.messages, services.db, None, after_id, limit)
    return Page(items=items, next_after_id=items[-1]["id"] if len(items) == limit else None)


# --- the generic routes, last (see the module docstring) ---------------------------------


@router.put(
    "/{kinds}/{ref}", summary="Create or update a definition (a new version)", openapi_extra=_BODY
)
async def put_definition(
    request: Request, services: Svc, kinds: KindPath, ref: DefinitionId
) -> AppliedPublic:
    document = _document(PLURALS[kinds], ref, await _document_body(request))
    return await run_in_threadpool(_applied, services.db, document, services.clock.now())


@router.get("/{kinds}", summary="The live definitions of one kind")
async def list_kind(services: Svc, kinds: KindPath) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with services.db.read() as conn:
            return [d.as_json() for d in repo.live(conn, PLURALS[kinds])]

    return await run_in_threadpool(read)


@router.get("/{kinds}/{ref}", summary="A definition with all its versions, newest first")
async def get_definition(services: Svc, kinds: KindPath, ref: DefinitionId) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with services.db.read() as conn:
            return [d.as_json() for d in repo.history(conn, PLURALS[kinds], ref)]

    return await run_in_threadpool(read)


def _set_status(db: Any, kind: Kind, ref: str, status: str, now: Any) -> repo.StoredDefinition:
    """Change a status unless that leaves a live definition referring to something gone
    (archiving a segment a journey uses, resuming a journey whose segment is archived):
    the broken one would refuse every later change to the workspace."""
    with db.read() as conn:
        latest = repo.history(conn, kind, ref)[0]
        before = repo.documents(repo.live(conn))
    after = [d for d in before if (d.kind, d.id) != (kind, ref)]
    if status != "archived":
        after += repo.documents([latest])
    known = set(load_documents(before)[1])
    broken = [p for p in load_documents(after)[1] if p.level == "error" and p not in known]
    if broken:
        verb = {"archived": "archiving", "paused": "pausing", "active": "resuming"}[status]
        listed = "; ".join(str(p) for p in broken)
        raise InvalidInput(
            f"{verb} {kind} {ref!r} would leave {len(broken)} problem(s): {listed}; "
            f"change or archive what refers to it first"
        )
    return engine.set_status(db, kind, ref, status, now)


@router.post("/{kinds}/{ref}/{action}", summary="Pause, resume or archive a definition")
async def change_status(
    services: Svc,
    kinds: KindPath,
    ref: DefinitionId,
    action: Annotated[Literal["pause", "resume", "archive"], Path(description="What to do")],
) -> dict[str, Any]:
    status = {"pause": "paused", "resume": "active", "archive": "archived"}[action]
    stored = await run_in_threadpool(
        _set_status, services.db, PLURALS[kinds], ref, status, services.clock.now()
    )
    return stored.as_json()
