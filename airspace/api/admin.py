"""The admin API (admin keys): profiles, events, quarantine, merges, consent,
export and erasure of a person. Definitions have their own module (`definitions.py`)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from airspace.api.auth import credentials, require_kind
from airspace.bootstrap import Services
from airspace.domain import consent as consent_rules
from airspace.domain.consent import CHANNELS, ConsentRecord
from airspace.domain.errors import InvalidInput, NotFound
from airspace.store import admin as queries
from airspace.store.keys import ApiKey

ProfileId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_-]+$",
        description="A profile id (a merged profile's id leads to its survivor)",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most items to return")]
AfterId = Annotated[int, Query(ge=0, le=2**62, description="Return items with a larger id")]


class ConsentChange(BaseModel):
    """A consent change made by an operator (e.g. a support agent)."""

    channel: Literal["email", "sms", "push", "webhook", "onsite"] | None = Field(
        None, description="The channel; give this or topic"
    )
    topic: str | None = Field(
        None, min_length=1, max_length=100, description="The topic; give this or channel"
    )
    status: Literal["opted_in", "opted_out", "unknown"]
    source: str = Field("admin-api", max_length=200)


class ErasurePublic(BaseModel):
    """What an erasure removed."""

    profile_id: str
    identifiers: int
    events: int
    merges: int
    quarantined: int
    pending: int


class Page(BaseModel):
    """A page of items; pass the last id as `after_id` for the next one."""

    items: list[dict[str, Any]]
    next_after_id: int | None


def _page(items: list[dict[str, Any]], limit: int) -> Page:
    return Page(items=items, next_after_id=items[-1]["id"] if len(items) == limit else None)


def services_of(request: Request) -> Services:
    """The services of the app serving this request."""
    services: Services = request.app.state.services
    return services


def admin_key(request: Request) -> ApiKey:
    """The admin key of the request, or an error."""
    return require_kind(services_of(request).keys, credentials(request), "admin")


Svc = Annotated[Services, Depends(services_of)]
router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin_key)])


@router.get("/profiles", summary="Find a profile by identifier")
async def find_profile(
    services: Svc,
    identifier: Annotated[
        str,
        Query(
            min_length=3,
            max_length=600,
            description="type:value, e.g. email:ana@example.com or user_id:42",
        ),
    ],
) -> dict[str, Any]:
    parsed = queries.normalize_identifier(identifier, services.settings.phone_region)
    profile_id = await run_in_threadpool(queries.find_profile_id, services.db, parsed)
    if profile_id is None:
        raise NotFound(f"no profile has identifier {parsed.key}")
    return await run_in_threadpool(queries.profile_view, services.db, profile_id)


@router.get("/profiles/{profile_id}", summary="A profile by id (merged ids lead to the survivor)")
async def get_profile(services: Svc, profile_id: ProfileId) -> dict[str, Any]:
    return await run_in_threadpool(queries.profile_view, services.db, profile_id)


@router.get("/profiles/{profile_id}/events", summary="A profile's events")
async def profile_events(
    services: Svc, profile_id: ProfileId, limit: Limit = 100, after_id: AfterId = 0
) -> Page:
    items = await run_in_threadpool(
        lambda: queries.list_events(
            services.db, profile_id=profile_id, after_id=after_id, limit=limit
        )
    )
    return _page(items, limit)


@router.get("/profiles/{profile_id}/export", summary="Everything stored about a person")
async def export(services: Svc, profile_id: ProfileId) -> dict[str, Any]:
    return await run_in_threadpool(queries.export_person, services.db, profile_id, services.rules)


@router.delete("/profiles/{profile_id}", summary="Erase a person (GDPR)")
async def erase(services: Svc, profile_id: ProfileId) -> ErasurePublic:
    erasure = await run_in_threadpool(
        queries.erase_person,
        services.db,
        profile_id,
        services.secret,
        services.clock.now(),
        services.rules,
    )
    return ErasurePublic(**dataclasses.asdict(erasure))


@router.post("/profiles/{profile_id}/consent", summary="Record a consent change")
async def change_consent(
    services: Svc, profile_id: ProfileId, change: ConsentChange
) -> dict[str, Any]:
    if (change.channel is None) == (change.topic is None):
        raise InvalidInput("give exactly one of channel or topic")
    key = (
        consent_rules.channel_key(change.channel)
        if change.channel is not None
        else consent_rules.topic_key(change.topic.strip().lower() if change.topic else "")
    )
    record = ConsentRecord(change.status, change.source, services.clock.now())
    return await run_in_threadpool(
        queries.set_consent, services.db, profile_id, key, record, services.clock.now()
    )


@router.get("/events", summary="The event log")
async def events(services: Svc, limit: Limit = 100, after_id: AfterId = 0) -> Page:
    items = await run_in_threadpool(
        lambda: queries.list_events(services.db, profile_id=None, after_id=after_id, limit=limit)
    )
    return _page(items, limit)


@router.get("/quarantine", summary="Refused events with their reasons")
async def quarantine(services: Svc, limit: Limit = 100, after_id: AfterId = 0) -> Page:
    items = await run_in_threadpool(
        lambda: queries.list_quarantine(services.db, after_id=after_id, limit=limit)
    )
    return _page(items, limit)


@router.get("/merges", summary="Profile merges with their causes")
async def merges(services: Svc, limit: Limit = 100, after_id: AfterId = 0) -> Page:
    items = await run_in_threadpool(
        lambda: queries.list_merges(services.db, after_id=after_id, limit=limit)
    )
    return _page(items, limit)


@router.get("/stats", summary="Row counts and channels")
async def stats(services: Svc) -> dict[str, Any]:
    counts = await run_in_threadpool(queries.counts, services.db)
    return {"counts": counts, "channels": list(CHANNELS)}
