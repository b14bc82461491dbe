"""The admin API for definitions (segments, journeys, topics, stores, regions, settings)
and what they produce: segment members and sizes, enrollments, captured messages.

Definitions are sent as YAML (`application/yaml`, `text/yaml`) or JSON, exactly
as in a definitions folder, and go through the same validation as
`airspace validate`: every problem at once, with its path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import orjson
import yaml
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from airspace.api.admin import Page, Svc, admin_key
from airspace.domain.definitions import Document, Kind, load_documents
from airspace.domain.errors import InvalidInput, LimitExceeded, MalformedJson
from airspace.engine import definitions as engine
from airspace.store import definitions as repo
from airspace.store import journey_admin as queries

MAX_DEFINITION_BYTES = 1024 * 1024
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
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedJson(f"the body is not valid JSON: {error}") from None
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        try:
            return yaml.safe_load(raw.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise InvalidInput(f"the body is not valid YAML: {error}") from None
    raise InvalidInput(
        f"send the definition as application/json or application/yaml, not {content_type!r}"
    )


def _document(kind: Kind, ref: str, body: Any) -> Document:
    if not isinstance(body, dict):
        raise InvalidInput(f"a {kind} definition is a mapping (object), not {type(body).__name__}")
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
        kind = next(
            (
                k
                for k in ("segment", "journey", "topic", "store", "region")
                if isinstance(item, dict) and k in item
            ),
            "settings",
        )
        ref = item.get(kind) if isinstance(item, dict) and kind != "settings" else "settings"
        if not isinstance(ref, str):
            problems.append(
                ProblemPublic(path=f"[{index}]", message=f"{kind} needs a text id", level="error")
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


@router.post("/{kinds}/{ref}/{action}", summary="Pause, resume or archive a definition")
async def change_status(
    services: Svc,
    kinds: KindPath,
    ref: DefinitionId,
    action: Annotated[Literal["pause", "resume", "archive"], Path(description="What to do")],
) -> dict[str, Any]:
    status = {"pause": "paused", "resume": "active", "archive": "archived"}[action]
    stored = await run_in_threadpool(
        engine.set_status, services.db, PLURALS[kinds], ref, status, services.clock.now()
    )
    return stored.as_json()


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


@router.get("/messages", summary="Messages handed to channels (the capture channel's outbox)")
async def all_messages(
    services: Svc, limit: Limit = 100, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> Page:
    items = await run_in_threadpool(queries.messages, services.db, None, after_id, limit)
    return Page(items=items, next_after_id=items[-1]["id"] if len(items) == limit else None)
