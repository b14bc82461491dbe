"""The definitions admin API over real HTTP: segments and journeys as YAML and JSON,
versions, statuses, every kind of bad input (each refused with a `{code, message}` that
says what and where, storing nothing), and the example workspace running end to end:
events in through the tracking API, the worker on a simulated clock, and the exact
timeline of the messages it sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airspace.domain.clock import SimulatedClock
from tests.conftest import START, LiveServer
from tests.unit.test_definitions_fuzz import documents, dump, laughs, texts

EXAMPLES = Path(__file__).parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
UNUSED = "no journey, content item or other segment uses this segment"

CUSTOMERS = "segment: customers\ndescription: Bought once.\nevent: Order Completed\n"
CART = """\
journey: cart
entry: {event: Cart Abandoned, key: properties.cart_id}
steps:
  - wait: 1h
  - message: {channels: [push, email], content: cart-reminder}
"""


def refused(response: httpx.Response, status: int, code: str) -> str:
    """Check an error answer; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def put_yaml(admin: httpx.Client, path: str, text: str) -> httpx.Response:
    return admin.put(path, content=text.encode(), headers=YAML)


def versions(admin: httpx.Client, path: str) -> list[tuple[int, str]]:
    """(version, status) of every version, newest first."""
    return [(v["version"], v["status"]) for v in ok(admin.get(path))]


def track(server: LiveServer, *messages: dict[str, Any]) -> None:
    """Send events through the tracking API, then let the worker apply them."""
    response = httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": list(messages)},
        auth=(server.write_key, ""),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["errors"] == []
    server.services.worker().drain()


def profile_id(admin: httpx.Client, user_id: str) -> str:
    found: str = ok(admin.get("/profiles", params={"identifier": f"user_id:{user_id}"}))["id"]
    return found


# --- YAML and JSON, versions ---------------------------------------------------------------


def test_segment_as_yaml_and_json_versions_only_on_change(admin: httpx.Client) -> None:
    created = ok(put_yaml(admin, "/segments/customers", CUSTOMERS))
    assert created == {
        "kind": "segment",
        "id": "customers",
        "action": "create",
        "version": 1,
        "status": "active",
        "warnings": [{"path": "api:segment/customers", "message": UNUSED, "level": "warning"}],
        "segments_computed": {"customers": 0},
    }
    # The same again, as YAML or as JSON (without the id: the path gives it): no new version.
    again = ok(put_yaml(admin, "/segments/customers", CUSTOMERS))
    assert (again["action"], again["version"], again["segments_computed"]) == ("unchanged", 1, {})
    same = {"description": "Bought once.", "event": "Order Completed"}
    assert ok(admin.put("/segments/customers", json=same))["action"] == "unchanged"
    # A change is a new version; the old one is kept as "replaced".
    changed = ok(admin.put("/segments/customers", json={**same, "within": "365d"}))
    assert (changed["action"], changed["version"], changed["status"]) == ("update", 2, "active")
    history = ok(admin.get("/segments/customers"))
    assert [(v["version"], v["status"], v["definition"]) for v in history] == [
        (2, "active", {"segment": "customers", **same, "within": "365d"}),
        (1, "replaced", {"segment": "customers", **same}),
    ]
    assert {v["source"] for v in history} == {"api:segment/customers"}
    [live] = ok(admin.get("/segments"))
    assert (live["id"], live["version"]) == ("customers", 2)
    assert [d["id"] for d in ok(admin.get("/definitions", params={"kind": "segment"}))] == [
        "customers"
    ]


def test_journey_as_yaml_and_json(admin: httpx.Client) -> None:
    created = ok(put_yaml(admin, "/journeys/cart", CART))
    assert (created["kind"], created["action"], created["version"]) == ("journey", "create", 1)
    assert created["warnings"] == []
    body = yaml.safe_load(CART)
    assert ok(admin.put("/journeys/cart", json=body))["action"] == "unchanged"
    body["steps"][0]["wait"] = "2h"
    assert ok(admin.put("/journeys/cart", json=body))["version"] == 2
    # Sent as text/yaml with a charset, back to the first version's content: version 3.
    response = admin.put(
        "/journeys/cart", content=CART, headers={"Content-Type": "text/yaml; charset=utf-8"}
    )
    assert ok(response)["version"] == 3
    history = ok(admin.get("/journeys/cart"))
    assert [(v["version"], v["status"]) for v in history] == [
        (3, "active"),
        (2, "replaced"),
        (1, "replaced"),
    ]
    assert history[0]["definition"] == history[2]["definition"] == yaml.safe_load(CART)
    assert history[1]["definition"]["steps"][0] == {"wait": "2h"}


def test_settings_topics_stores_and_regions(admin: httpx.Client) -> None:
    assert refused(admin.get("/settings"), 404, "not_found") == "no settings 'settings'"
    text = (EXAMPLES / "settings.yaml").read_text()
    assert ok(put_yaml(admin, "/settings", text))["version"] == 1
    [stored] = ok(admin.get("/settings"))
    assert stored["definition"]["controller"]["caps"][1] == {
        "scope": "channel:sms",
        "max": 1,
        "per": "1d",
    }
    assert ok(admin.put("/topics/news", json={"kind": "opt_in"}))["version"] == 1
    assert ok(admin.put("/regions/idf", json={"timezone": "Europe/Paris"}))["version"] == 1
    store = {"latitude": 48.86, "longitude": 2.35, "region": "idf"}
    assert ok(admin.put("/stores/rivoli", json=store))["version"] == 1
    unknown = refused(
        admin.put("/stores/munich", json={**store, "region": "bavaria"}), 400, "invalid_input"
    )
    assert unknown == "1 problem(s): api:store/munich: region: unknown region 'bavaria'"
    assert [(d["kind"], d["id"]) for d in ok(admin.get("/definitions"))] == [
        ("region", "idf"),
        ("settings", "settings"),
        ("store", "rivoli"),
        ("topic", "news"),
    ]


def test_pause_resume_archive(admin: httpx.Client) -> None:
    ok(put_yaml(admin, "/segments/customers", CUSTOMERS))
    ok(put_yaml(admin, "/journeys/cart", CART))
    paused = ok(admin.post("/journeys/cart/pause"))
    assert (paused["id"], paused["version"], paused["status"]) == ("cart", 1, "paused")
    # A new version of a paused journey stays paused.
    changed = ok(put_yaml(admin, "/journeys/cart", CART.replace("1h", "2h")))
    assert (changed["version"], changed["status"]) == (2, "paused")
    assert [j["status"] for j in ok(admin.get("/journeys"))] == ["paused"]
    assert ok(admin.post("/journeys/cart/resume"))["status"] == "active"
    assert versions(admin, "/journeys/cart") == [(2, "active"), (1, "replaced")]

    only = refused(admin.post("/segments/customers/pause"), 400, "invalid_input")
    assert only == "only journeys can be paused"
    assert refused(admin.post("/journeys/nope/pause"), 404, "not_found") == "no journey 'nope'"
    wrong = refused(admin.post("/journeys/cart/stop"), 422, "invalid_input")
    assert wrong == "path.action: Input should be 'pause', 'resume' or 'archive'"

    assert ok(admin.post("/journeys/cart/archive"))["status"] == "archived"
    assert ok(admin.get("/journeys")) == []
    assert versions(admin, "/journeys/cart") == [(2, "archived"), (1, "replaced")]
    # Putting it again brings it back as a new version.
    back = ok(put_yaml(admin, "/journeys/cart", CART))
    assert (back["action"], back["version"], back["status"]) == ("create", 3, "active")


def test_archiving_a_segment_in_use_is_refused(admin: httpx.Client) -> None:
    """Otherwise the journey would refer to nothing, and every later put would be refused
    because of it."""
    ok(put_yaml(admin, "/segments/vip", "trait: tier\neq: vip\n"))
    journey = "entry: {segment: vip}\nsteps: [{message: {content: hello}}]\n"
    ok(put_yaml(admin, "/journeys/vip-welcome", journey))
    message = refused(admin.post("/segments/vip/archive"), 400, "invalid_input")
    assert message == (
        "archiving segment 'vip' would leave 1 problem(s): api:journey/vip-welcome: "
        "entry.segment: unknown segment 'vip'; change or archive what refers to it first"
    )
    assert versions(admin, "/segments/vip") == [(1, "active")]
    assert ok(admin.put("/segments/other", json={"trait": "tier", "eq": "gold"}))["version"] == 1
    # In the right order it works; resuming the journey alone is refused as well.
    assert ok(admin.post("/journeys/vip-welcome/archive"))["status"] == "archived"
    assert ok(admin.post("/segments/vip/archive"))["status"] == "archived"
    message = refused(admin.post("/journeys/vip-welcome/resume"), 400, "invalid_input")
    assert message.startswith("resuming journey 'vip-welcome' would leave 1 problem(s): ")
    assert versions(admin, "/journeys/vip-welcome") == [(1, "archived")]


# --- refusals: every problem, nothing stored -----------------------------------------------

BROKEN_CART = """\
journey: cart
entry: {event: Cart Abandoned}
holdout: 150%
steps:
  - wait: 1h
  - wait: soon
  - message: {channels: [fax], content: cart-reminder}
  - branch: [{if: {segment: nobody}, next: nowhere}]
"""


def test_an_invalid_journey_lists_every_problem_and_keeps_the_current_version(
    admin: httpx.Client,
) -> None:
    ok(put_yaml(admin, "/journeys/cart", CART))
    for response in (
        put_yaml(admin, "/journeys/cart", BROKEN_CART),
        admin.put("/journeys/cart", json=yaml.safe_load(BROKEN_CART)),
    ):
        message = refused(response, 400, "invalid_input")
        assert message == (
            "5 problem(s): "
            "api:journey/cart: holdout: expected a share from 0% to 100%; got '150%'; "
            "api:journey/cart: steps[1].wait: expected a duration such as 30m, 1h, 7d or 2w; "
            "got 'soon'; "
            "api:journey/cart: steps[2].message.channels[0]: unknown channel 'fax'; "
            "expected one of email, sms, push, webhook, onsite; "
            "api:journey/cart: steps[3].branch: leads to unknown step 'nowhere'; "
            "api:journey/cart: steps[3].branch: unknown segment 'nobody'"
        )
    assert versions(admin, "/journeys/cart") == [(1, "active")]
    assert ok(admin.get("/journeys/cart"))[0]["definition"] == yaml.safe_load(CART)


def test_problem_paths_of_an_invalid_journey(admin: httpx.Client) -> None:
    """Whatever the wording, each problem is named by its path."""
    message = refused(put_yaml(admin, "/journeys/cart", BROKEN_CART), 400, "invalid_input")
    count, _, listed = message.partition(" problem(s): ")
    paths = [p.split(": ")[1] for p in listed.split("; api:journey/cart")]
    assert int(count) == len(paths)
    assert {"holdout", "steps[1].wait", "steps[2].message.channels[0]", "steps[3].branch"} <= set(
        paths
    )
    assert refused(admin.get("/journeys/cart"), 404, "not_found") == "no journey 'cart'"


def test_a_journey_on_an_unknown_segment_is_refused(admin: httpx.Client) -> None:
    text = "entry: {segment: lapsed}\nsteps: [{message: {content: hello}}]\n"
    message = refused(put_yaml(admin, "/journeys/back", text), 400, "invalid_input")
    assert message == "1 problem(s): api:journey/back: entry.segment: unknown segment 'lapsed'"
    assert refused(admin.get("/journeys/back"), 404, "not_found") == "no journey 'back'"
    ok(admin.put("/segments/lapsed", json={"not": {"event": "Order Completed", "within": "90d"}}))
    assert ok(put_yaml(admin, "/journeys/back", text))["version"] == 1


def test_the_path_and_the_body_must_name_the_same_id(admin: httpx.Client) -> None:
    message = refused(put_yaml(admin, "/segments/vip", CUSTOMERS), 400, "invalid_input")
    assert message == "the path says segment 'vip' but the body says 'customers'"
    number = refused(admin.put("/segments/vip", json={"segment": 7}), 400, "invalid_input")
    assert number == "the path says segment 'vip' but the body says 7"
    bad_id = refused(admin.put("/segments/a b", json={}), 422, "invalid_input")
    assert bad_id == "path.ref: String should match pattern '^[A-Za-z0-9_.-]+$'"
    assert ok(admin.get("/segments")) == []


def test_a_body_over_1_mb_is_refused_whole(admin: httpx.Client) -> None:
    """LimitExceeded answers 400 `request_too_large` everywhere in the API (api/errors.py),
    as the tracking API does, rather than 413."""
    description = "x" * (1024 * 1024)
    body = orjson.dumps({"segment": "big", "trait": "t", "description": description})
    message = refused(admin.put("/segments/big", content=body), 400, "request_too_large")
    assert message == f"a definition is at most 1048576 bytes; got {len(body)}"
    text = f"trait: t\ndescription: {description}\n"
    message = refused(put_yaml(admin, "/segments/big", text), 400, "request_too_large")
    assert message == f"a definition is at most 1048576 bytes; got {len(text)}"
    assert refused(admin.get("/segments/big"), 404, "not_found") == "no segment 'big'"
    # Just under the limit is fine.
    fits = {"trait": "t", "description": "x" * (1024 * 1024 - 100)}
    assert ok(admin.put("/segments/big", json=fits))["version"] == 1


MALFORMED = [
    (
        "application/yaml",
        b"trait: tier\neq: [vip\n",
        "invalid_input",
        "the body is not valid YAML (line 3, column 1): expected ',' or ']', but got "
        "'<stream end>'",
    ),
    (
        "application/yaml",
        b"trait:\ttier\n",
        "invalid_input",
        "the body is not valid YAML (line 1, column 7): found character '\\t' that cannot "
        "start any token",
    ),
    (
        "application/yaml",
        b"trait: tier\neq: \xff\n",
        "invalid_input",
        "the body is not UTF-8 text: byte 0xff at position 16",
    ),
    (
        "application/json",
        b'{"trait": "tier",\n "eq": }',
        "malformed_json",
        "the body is not valid JSON: unexpected character: line 2 column 8 (char 25)",
    ),
    (
        "application/json",
        b"",
        "malformed_json",
        "the body is not valid JSON: Input is a zero-length, empty document: line 1 column 1 "
        "(char 0)",
    ),
    ("application/yaml", b"", "invalid_input", "the body is empty; send a definition"),
    (
        "application/yaml",
        b"# nothing but a comment\n",
        "invalid_input",
        "the body is empty; send a definition",
    ),
    (
        "application/yaml",
        b"~\n",
        "invalid_input",
        "a segment definition is a mapping (object), not nothing",
    ),
    (
        "application/json",
        b'"vip"',
        "invalid_input",
        "a segment definition is a mapping (object), not text ('vip')",
    ),
    (
        "application/json",
        b"[1, 2]",
        "invalid_input",
        "a segment definition is one mapping (object), not a list of 2; send one per request "
        "(validate takes several, `airspace apply` a folder)",
    ),
    (
        "application/yaml",
        b"segment: vip\ntrait: tier\n---\nsegment: gold\ntrait: tier\n",
        "invalid_input",
        "a segment definition is one mapping (object), not a list of 2; send one per request "
        "(validate takes several, `airspace apply` a folder)",
    ),
    (
        "text/html",
        b"<p>trait: tier</p>",
        "invalid_input",
        "send the definition with Content-Type application/yaml or application/json, "
        "not 'text/html'",
    ),
    (
        "application/x-www-form-urlencoded",
        b"trait=tier",
        "invalid_input",
        "send the definition with Content-Type application/yaml or application/json, "
        "not 'application/x-www-form-urlencoded'",
    ),
]


@pytest.mark.parametrize(
    ("content_type", "body", "code", "expected"),
    MALFORMED,
    ids=[f"malformed-{i}" for i in range(len(MALFORMED))],
)
def test_malformed_bodies_say_what_and_where(
    admin: httpx.Client, content_type: str, body: bytes, code: str, expected: str
) -> None:
    response = admin.put("/segments/vip", content=body, headers={"Content-Type": content_type})
    assert refused(response, 400, code) == expected
    assert ok(admin.get("/segments")) == []


UNSTORABLE = [
    (
        "trait: tier\ndescription: !!binary aGVsbG8=\n",
        "description is a bytes (a YAML tag such as !!set or !!binary); use text, numbers, "
        "true/false, lists and mappings",
    ),
    (
        "trait: tier\nin: !!set {vip, gold}\n",
        "in is a set (a YAML tag such as !!set or !!binary); use text, numbers, true/false, "
        "lists and mappings",
    ),
    (
        "trait: tier\neq: .nan\n",
        "eq is nan; expected a finite number",
    ),
    (
        "trait: tier\neq: 123456789012345678901234567890\n",
        "eq is a number too large to store (at most 20 digits)",
    ),
    (
        "trait: tier\neq: " + "9" * 5000 + "\n",
        "the body has a value YAML cannot read: Exceeds the limit (4300 digits) for integer "
        "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to "
        "increase the limit",
    ),
    (
        'trait: tier\neq: "a\\0b"\n',
        "eq contains the NUL character (\\u0000), which cannot be stored",
    ),
    (
        "trait: tier\nwhere: {2026-01-01: x}\n",
        "where has the key 2026-01-01 (a date); keys must be text: quote it",
    ),
    (
        "trait: tier\ndescription: &a [*a]\n",
        "description" + "[0]" * 64 + " is nested more than 64 levels deep (a YAML alias "
        "that contains itself?)",
    ),
    (
        "[" * 1000,
        "the body is nested too deeply; a definition nests at most 64 levels",
    ),
    (
        "trait: tier\nall: &loop [{any: *loop}]\n",
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), UNSTORABLE, ids=[f"unstorable-{i}" for i in range(len(UNSTORABLE))]
)
def test_what_cannot_be_stored_is_refused_with_its_path(
    admin: httpx.Client, text: str, expected: str | None
) -> None:
    message = refused(put_yaml(admin, "/segments/vip", text), 400, "invalid_input")
    if expected is None:
        assert message.endswith(
            " is nested more than 64 levels deep (a YAML alias that contains itself?)"
        )
    else:
        assert message == expected
    # The validate endpoint refuses it the same way, and nothing was stored.
    response = admin.post("/definitions/validate", content=text.encode(), headers=YAML)
    assert refused(response, 400, "invalid_input")
    assert ok(admin.get("/segments")) == []


def test_billion_laughs_is_refused_at_once(admin: httpx.Client) -> None:
    """A 1 KB body whose aliases stand for 387 million strings."""
    text = laughs(9, field="description", document="segment: vip\ntrait: tier\n")
    assert len(text) < 1024
    response = put_yaml(admin, "/segments/vip", text)
    assert refused(response, 400, "request_too_large") == (
        "the definition expands to more than 4194304 bytes once YAML aliases are repeated; "
        "the limit is 4194304"
    )
    response = admin.post("/definitions/validate", content=text.encode(), headers=YAML)
    assert refused(response, 400, "request_too_large")
    # A few aliases that stay small are fine.
    small = laughs(3, field="description", document="segment: vip\ntrait: tier\n")
    problems = ok(admin.post("/definitions/validate", content=small.encode(), headers=YAML))
    assert [(p["path"], p["level"]) for p in problems] == [
        ("api:segment/vip: anchors", "error"),
        ("api:segment/vip: description", "error"),
        ("api:segment/vip", "warning"),
    ]


# --- validate --------------------------------------------------------------------------------


def test_validate_lists_every_problem_with_what_is_stored(admin: httpx.Client) -> None:
    ok(put_yaml(admin, "/segments/customers", CUSTOMERS))
    body = (
        "segment: lonely\ntrait: tier\neq: vip\n---\n"
        "journey: cart\nentry: {segment: customers}\nsteps:\n  - wait: 1h\n  - wait: 3x\n---\n"
        "- not a definition\n---\n"
        "segment: 'a b'\nevent: E\n"
    )
    problems = ok(admin.post("/definitions/validate", content=body.encode(), headers=YAML))
    assert problems == [
        {
            "path": "[2]",
            "message": "expected a definition (a mapping), got a list",
            "level": "error",
        },
        {
            "path": "[3].segment",
            "message": "expected an id of letters, digits, '-', '_' or '.' (at most 100)",
            "level": "error",
        },
        {
            "path": "api:journey/cart: steps[1].wait",
            "message": "expected a duration such as 30m, 1h, 7d or 2w; got '3x'",
            "level": "error",
        },
        {"path": "api:segment/lonely", "message": UNUSED, "level": "warning"},
    ]
    # Nothing was stored.
    assert [d["id"] for d in ok(admin.get("/definitions"))] == ["customers"]
    # The same as a JSON array; a valid set answers [].
    valid = [{"journey": "cart", "entry": {"segment": "customers"}, "steps": [{"wait": "1h"}]}]
    assert ok(admin.post("/definitions/validate", json=valid)) == []
    assert ok(admin.post("/definitions/validate", json=valid[0])) == []


def test_validate_warns_about_unused_segments_only_as_warnings(admin: httpx.Client) -> None:
    problems = ok(
        admin.post(
            "/definitions/validate",
            json=[{"segment": "a", "trait": "t"}, {"segment": "b", "segment_x": 1}],
        )
    )
    assert problems == [
        {
            "path": "api:segment/b",
            "message": "unknown condition; start it with one of: all, any, not, event, trait, "
            "computed, segment, reachable, consent",
            "level": "error",
        },
        {"path": "api:segment/a", "message": UNUSED, "level": "warning"},
        {"path": "api:segment/b", "message": UNUSED, "level": "warning"},
    ]


# --- keys --------------------------------------------------------------------------------------


def test_the_definitions_api_needs_an_admin_key(live_server: LiveServer) -> None:
    base = f"{live_server.url}/admin/v1"
    calls = [
        ("PUT", "/segments/vip", CUSTOMERS),
        ("PUT", "/settings", "timezone: UTC\n"),
        ("POST", "/definitions/validate", CUSTOMERS),
        ("POST", "/journeys/cart/pause", ""),
        ("GET", "/segments/vip", ""),
        ("GET", "/segments/vip/members", ""),
        ("GET", "/messages", ""),
    ]
    for method, path, body in calls:
        anonymous = httpx.request(method, base + path, content=body, headers=YAML)
        assert refused(anonymous, 401, "unauthorized").startswith("no key"), path
        written = httpx.request(
            method,
            base + path,
            content=body,
            headers={**YAML, "Authorization": f"Bearer {live_server.write_key}"},
        )
        assert "use an admin (secret) key" in refused(written, 403, "forbidden"), path
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {live_server.admin_key}"}
    ) as admin:
        assert ok(admin.get("/definitions")) == []


# --- what definitions produce --------------------------------------------------------------------


def test_segment_members_and_sizes_after_a_put(
    live_server: LiveServer, admin: httpx.Client
) -> None:
    track(
        live_server,
        {"type": "identify", "userId": "ann", "traits": {"tier": "vip"}},
        {"type": "identify", "userId": "bob", "traits": {"tier": "vip"}},
        {"type": "identify", "userId": "cy", "traits": {"tier": "basic"}},
    )
    put = ok(put_yaml(admin, "/segments/vip", "trait: tier\neq: vip\n"))
    assert put["segments_computed"] == {"vip": 2}
    vips = sorted([profile_id(admin, "ann"), profile_id(admin, "bob")])
    assert ok(admin.get("/segments/vip/sizes"))["size"] == 2
    assert ok(admin.get("/segments/vip/sizes"))["segment"] == "vip"
    members = ok(admin.get("/segments/vip/members"))
    assert [m["profile_id"] for m in members["items"]] == vips
    assert {m["entered_at"] for m in members["items"]} == {START.isoformat()}
    assert members["next_after"] is None
    first = ok(admin.get("/segments/vip/members", params={"limit": 1}))
    assert ([m["profile_id"] for m in first["items"]], first["next_after"]) == (vips[:1], vips[0])
    rest = ok(admin.get("/segments/vip/members", params={"after": first["next_after"]}))
    assert [m["profile_id"] for m in rest["items"]] == vips[1:]
    # Changing the definition recomputes it for everyone.
    put = ok(put_yaml(admin, "/segments/vip", "trait: tier\nin: [vip, basic]\n"))
    assert (put["version"], put["segments_computed"]) == (2, {"vip": 3})
    assert ok(admin.get("/segments/vip/sizes"))["size"] == 3
    person = ok(admin.get(f"/profiles/{profile_id(admin, 'cy')}/journeys"))
    assert [s["segment_id"] for s in person["segments"]] == ["vip"]
    # Unknown segments and people answer plainly.
    assert ok(admin.get("/segments/nobody/members")) == {"items": [], "next_after": None}
    assert refused(admin.get("/profiles/nobody/journeys"), 404, "not_found") == (
        "no profile 'nobody'"
    )


# --- the example workspace end to end ----------------------------------------------------------

SETTINGS_AT_ONCE = """\
timezone: Europe/Paris
controller:
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps:
    - {scope: marketing, max: 3, per: 7d}
"""


def put_examples(admin: httpx.Client) -> None:
    """Every example definition, in an order where references resolve, with no holdout."""
    assert ok(put_yaml(admin, "/settings", SETTINGS_AT_ONCE))["version"] == 1
    files = [
        "topics.yaml",
        "stores.yaml",
        *sorted(f"segments/{p.name}" for p in (EXAMPLES / "segments").glob("*.yaml")),
    ]
    for name in files:
        for document in yaml.safe_load_all((EXAMPLES / name).read_text()):
            kind = next(k for k in ("segment", "topic", "store", "region") if k in document)
            # As JSON, without the id: the path gives it.
            body = {k: v for k, v in document.items() if k != kind}
            assert ok(admin.put(f"/{kind}s/{document[kind]}", json=body))["version"] == 1
    for path in sorted((EXAMPLES / "journeys").glob("*.yaml")):
        # As YAML, exactly as in the folder, with its comments.
        text = path.read_text()
        text = (
            text.replace("holdout: 10%", "holdout: 0%")
            if "holdout:" in text
            else text + "holdout: 0%\n"
        )
        put = ok(put_yaml(admin, f"/journeys/{path.stem}", text))
        assert (put["action"], put["version"]) == ("create", 1)
    # win-back, the last one, uses the last unused segment.
    assert put["warnings"] == []


def messages(admin: httpx.Client) -> list[tuple[str, str, str, str, str]]:
    """Every captured message: (when, to whom, channel, address, content), in order."""
    page = ok(admin.get("/messages", params={"limit": 1000}))
    assert page["next_after_id"] is None
    return sorted(
        (m["sent_at"], m["profile_id"], m["channel"], m["address"], m["content"])
        for m in page["items"]
    )


def enrollment(admin: httpx.Client, person: str, journey: str) -> dict[str, Any]:
    found = [
        e
        for e in ok(admin.get(f"/profiles/{person}/journeys"))["enrollments"]
        if e["journey_id"] == journey
    ]
    assert len(found) == 1, found
    return found[0]


def at(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def test_abandoned_cart_end_to_end(
    live_server: LiveServer, admin: httpx.Client, clock: SimulatedClock
) -> None:
    worker = live_server.services.worker()
    put_examples(admin)
    t0 = clock.now()
    cart = "Cart Abandoned"
    track(
        live_server,
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {
            "type": "identify",
            "userId": "bob",
            "traits": {"email": "bob@example.com"},
            "context": {"device": {"token": "push-token-bob"}},
        },
        {"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}},
        {"type": "track", "userId": "ann", "event": cart, "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "bob", "event": cart, "properties": {"cart_id": "c2"}},
        {"type": "track", "userId": "cy", "event": cart, "properties": {"cart_id": "c3"}},
    )
    ann, bob, cy = (profile_id(admin, u) for u in ("ann", "bob", "cy"))
    waiting = enrollment(admin, ann, "abandoned-cart")
    assert (waiting["step_id"], waiting["key"], waiting["status"], waiting["wake_at"]) == (
        "wait-for-purchase",
        "c1",
        "active",
        at(t0 + timedelta(hours=1)),
    )
    assert messages(admin) == []

    # Cy buys her cart after 30 minutes: out of the journey, never reminded.
    clock.advance(timedelta(minutes=30))
    track(
        live_server,
        {
            "type": "track",
            "userId": "cy",
            "event": "Order Completed",
            "properties": {"cart_id": "c3", "revenue": 10},
        },
    )
    left = enrollment(admin, cy, "abandoned-cart")
    assert (left["status"], left["exit_reason"], left["ended_at"]) == (
        "exited",
        "exit event Order Completed",
        at(t0 + timedelta(minutes=30)),
    )

    clock.advance(timedelta(minutes=29, seconds=59))
    worker.drain()
    assert messages(admin) == []
    clock.advance(timedelta(seconds=1))  # exactly one hour after the cart was abandoned
    worker.drain()
    one_hour = at(t0 + timedelta(hours=1))
    # Each on the first channel of [push, email] they can be reached on.
    assert messages(admin) == sorted(
        [
            (one_hour, ann, "email", "ann@example.com", "cart-reminder"),
            (one_hour, bob, "push", "push-token-bob", "cart-reminder"),
        ]
    )

    # Ann buys her cart two hours later: her enrollment ends, what was sent stays sent.
    clock.advance(timedelta(hours=2))
    track(
        live_server,
        {
            "type": "track",
            "userId": "ann",
            "event": "Order Completed",
            "properties": {"cart_id": "c1", "revenue": 42.5},
        },
    )
    ended = enrollment(admin, ann, "abandoned-cart")
    assert (ended["status"], ended["exit_reason"], ended["ended_at"]) == (
        "exited",
        "exit event Order Completed",
        at(t0 + timedelta(hours=3)),
    )
    assert (ended["converted_at"], ended["conversion_value"]) == (at(t0 + timedelta(hours=3)), 42.5)
    person = ok(admin.get(f"/profiles/{ann}/journeys"))
    # Nothing already sent is withdrawn.
    assert [(c["spec"]["content"], c["status"]) for c in person["candidates"]] == [
        ("cart-reminder", "sent")
    ]
    [sent] = ok(admin.get(f"/profiles/{ann}/messages"))["items"]
    assert (sent["content"], sent["status"], sent["sent_at"]) == (
        "cart-reminder",
        "captured",
        one_hour,
    )

    # Bob did not buy: a day after the reminder, the second one (split 50/50), by email.
    clock.advance(timedelta(hours=21, minutes=59))
    worker.drain()
    assert len(messages(admin)) == 2
    clock.advance(timedelta(minutes=1))
    worker.drain()
    day_after = at(t0 + timedelta(days=1, hours=1))
    [(_, whom, channel, address, content)] = [m for m in messages(admin) if m[0] == day_after]
    assert (whom, channel, address) == (bob, "email", "bob@example.com")
    assert content in ("cart-reminder-2", "cart-reminder-discount")
    done = enrollment(admin, bob, "abandoned-cart")
    assert (done["status"], done["ended_at"]) == ("completed", day_after)

    clock.advance(timedelta(days=3))
    worker.drain()
    assert len(messages(admin)) == 3
    report = ok(admin.get("/journeys/abandoned-cart/report"))
    assert sorted((g["status"], g["enrollments"], g["converted"]) for g in report["groups"]) == [
        ("completed", 1, 0),
        ("exited", 2, 2),
    ]
    exited = ok(admin.get("/journeys/abandoned-cart/enrollments", params={"status": "exited"}))
    assert sorted(e["profile_id"] for e in exited["items"]) == sorted([ann, cy])


def test_welcome_series_end_to_end(
    live_server: LiveServer, admin: httpx.Client, clock: SimulatedClock
) -> None:
    worker = live_server.services.worker()
    put_examples(admin)
    # Thursday 5 November 2026, 17:30 in Paris (CET, UTC+1).
    clock.advance(datetime(2026, 11, 5, 16, 30, tzinfo=UTC) - clock.now())
    signed_up = clock.now()
    track(
        live_server,
        {"type": "identify", "userId": "eve", "traits": {"email": "eve@example.com"}},
        {"type": "track", "userId": "eve", "event": "Signed Up"},
        {"type": "identify", "userId": "fay", "traits": {"email": "fay@example.com"}},
        {"type": "track", "userId": "fay", "event": "Signed Up"},
    )
    eve, fay = profile_id(admin, "eve"), profile_id(admin, "fay")
    now = at(signed_up)
    # The first message at once (urgent, and the decision window is 0).
    assert messages(admin) == sorted(
        [
            (now, eve, "email", "eve@example.com", "welcome-1"),
            (now, fay, "email", "fay@example.com", "welcome-1"),
        ]
    )
    assert enrollment(admin, eve, "welcome")["wake_at"] == at(signed_up + timedelta(days=2))
    # Fay buys the next day: out of the series.
    clock.advance(timedelta(days=1))
    track(live_server, {"type": "track", "userId": "fay", "event": "Order Completed"})
    left = enrollment(admin, fay, "welcome")
    assert (left["status"], left["exit_reason"]) == ("exited", "exit event Order Completed")

    # Two days after signing up it is Saturday 17:30: wait for the next weekday at 10:00
    # in Paris, Monday 9 November 10:00 CET = 09:00 UTC.
    clock.advance(timedelta(days=1))
    worker.drain()
    monday = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    waiting = enrollment(admin, eve, "welcome")
    assert (waiting["step_id"], waiting["wake_at"]) == ("morning", at(monday))
    clock.advance(monday - timedelta(minutes=1) - clock.now())
    worker.drain()
    assert len(messages(admin)) == 2
    clock.advance(timedelta(minutes=1))
    worker.drain()
    assert messages(admin)[-1] == (at(monday), eve, "email", "eve@example.com", "welcome-2")
    # Five days later the offer, on the first of [email, push] she can be reached on.
    clock.advance(timedelta(days=5))
    worker.drain()
    assert messages(admin) == sorted(
        [
            (now, eve, "email", "eve@example.com", "welcome-1"),
            (now, fay, "email", "fay@example.com", "welcome-1"),
            (at(monday), eve, "email", "eve@example.com", "welcome-2"),
            (at(monday + timedelta(days=5)), eve, "email", "eve@example.com", "welcome-offer"),
        ]
    )
    done = enrollment(admin, eve, "welcome")
    assert (done["status"], done["ended_at"]) == ("completed", at(monday + timedelta(days=5)))
    assert [m["content"] for m in ok(admin.get(f"/profiles/{fay}/messages"))["items"]] == [
        "welcome-1"
    ]


# --- fuzz ----------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_arbitrary_definitions_never_break_the_api(
    live_server: LiveServer, admin: httpx.Client
) -> None:
    """Whatever is put or validated, the answer is a 200 or a `{code, message}` 4xx; and
    a good definition is stored afterwards as if nothing had happened."""
    stored = 0

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        kinds=st.sampled_from(["segments", "journeys", "topics", "stores", "regions", "settings"]),
        body=documents.map(dump) | texts,
        as_json=st.booleans(),
        validate=st.booleans(),
    )
    def put(kinds: str, body: str, as_json: bool, validate: bool) -> None:
        nonlocal stored
        if as_json:
            try:
                content = orjson.dumps(yaml.safe_load(body), default=str)
            except (yaml.YAMLError, TypeError, ValueError, RecursionError):
                content = body.encode("utf-8", "surrogatepass")
            headers = {"Content-Type": "application/json"}
        else:
            content, headers = body.encode("utf-8", "surrogatepass"), YAML
        path = (
            "/definitions/validate"
            if validate
            else ("/settings" if kinds == "settings" else f"/{kinds}/fuzz")
        )
        response = admin.request(
            "POST" if validate else "PUT", path, content=content, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        answer = response.json()
        if response.status_code == 400:
            assert set(answer) == {"code", "message"}, answer
            assert answer["message"], answer
        elif validate:
            for problem in answer:
                assert problem["path"], problem
                assert problem["message"], problem
                assert problem["level"] in ("error", "warning"), problem
        else:
            stored += 1
            assert answer["action"] in ("create", "update", "unchanged"), answer

    put()
    good = ok(
        put_yaml(
            admin, "/segments/after-the-storm", CUSTOMERS.replace("customers", "after-the-storm")
        )
    )
    assert (good["action"], good["version"]) == ("create", 1)
