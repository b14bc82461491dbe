"""The application factory: tracking + admin + /metrics + /healthz, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import ORJSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from airspace import __version__
from airspace.api import admin, definitions, errors, tracking
from airspace.bootstrap import Services


def create_app(services: Services) -> FastAPI:
    """An Airspace HTTP app bound to `services`."""
    app = FastAPI(
        title="Airspace",
        version=__version__,
        description="Segment-compatible tracking API and admin API of Airspace.",
        default_response_class=ORJSONResponse,
    )
    app.state.services = services
    errors.install(app)
    # analytics.js posts from customers' sites: any origin, no cookies.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "OPTIONS"],
        allow_headers=["*"],
        allow_credentials=False,
    )
    app.include_router(tracking.build_router(services))
    app.include_router(admin.router)
    app.include_router(definitions.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """An app configured from the environment: what each `serve --http-processes` process runs."""
    from airspace.bootstrap import build_services

    return create_app(build_services())
