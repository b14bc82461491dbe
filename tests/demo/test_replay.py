"""The CDNOW demo: loading the files, building events, replaying them over HTTP."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airspace.demo.replay import (
    CDNOW_SAMPLE,
    MAX_EVENT_BYTES,
    Event,
    Purchase,
    ReplayError,
    build_events,
    load_cdnow,
    replay,
    replay_sync,
)

SAMPLE = Path(__file__).parent.parent / "data" / "cdnow" / "CDNOW_sample.txt"
TODAY = date(2026, 11, 22)
SEED = 42


def _time(event: Event) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def purchases() -> list[Purchase]:
    return load_cdnow(SAMPLE)


@pytest.fixture(scope="module")
def events(purchases: list[Purchase]) -> list[Event]:
    return build_events(purchases, today=TODAY, seed=SEED)


# --------------------------------------------------------------------------- load_cdnow


def test_sample_file_loads(purchases: list[Purchase]) -> None:
    assert len(purchases) == 6919
    assert len({p.customer_id for p in purchases}) == 2357
    assert purchases[0] == Purchase("00004", date(1997, 1, 1), 2, 29.33)
    assert max(p.day for p in purchases) == date(1998, 6, 30)


def test_packaged_sample_is_the_test_copy() -> None:
    assert CDNOW_SAMPLE.read_bytes() == SAMPLE.read_bytes()


def test_master_format_with_header_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "master.txt"
    path.write_bytes(
        b" customer_id  date number_of_cds  dollar_value\r\n"
        b" 00001 19970101  1   11.77\r\n"
        b"\r\n"
        b" 00002 19970112  5   77.00\r\n"
        b" 00002 19970112  1    0.00\r\n"
    )
    assert load_cdnow(path) == [
        Purchase("00001", date(1997, 1, 1), 1, 11.77),
        Purchase("00002", date(1997, 1, 12), 5, 77.0),
        Purchase("00002", date(1997, 1, 12), 1, 0.0),
    ]


def test_sample_format(tmp_path: Path) -> None:
    path = tmp_path / "sample.txt"
    path.write_text(" 00004 0001 19970101  2   29.33\n 00021 0002 19980630  3   63.34\n")
    assert load_cdnow(path) == [
        Purchase("00004", date(1997, 1, 1), 2, 29.33),
        Purchase("00021", date(1998, 6, 30), 3, 63.34),
    ]


def test_empty_file_has_no_purchases(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    assert load_cdnow(path) == []


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (" 00003 19970132  1  10.00", "not a YYYYMMDD day"),
        (" 00003 1997010  1  10.00", "not a YYYYMMDD day"),
        (" 00003 19970102  x  10.00", "number_of_cds"),
        (" 00003 19970102  -1  10.00", "number_of_cds"),
        (" 00003 19970102  1  ten", "dollar_value"),
        (" 00003 19970102  1  nan", "dollar_value"),
        (" 00003 19970102  1  -5.00", "dollar_value"),
        (" abc 19970102  1  10.00", "customer_id"),
        (" 00003 19970102  1", "expected 4 fields"),
        (" 00003 0001 19970102  1  10.00", "expected 4 fields"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "broken.txt"
    path.write_text(
        f" customer_id date number_of_cds dollar_value\n 00001 19970101 1 11.77\n{bad_line}\n"
    )
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3")) as caught:
        load_cdnow(path)
    assert reason in str(caught.value)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n")
    with pytest.raises(ValueError, match=r"line 1: expected 4 fields .* or 5 fields"):
        load_cdnow(path)


# --------------------------------------------------------------------------- build_events


def test_same_seed_same_events_other_seed_other_events(purchases: list[Purchase]) -> None:
    subset = purchases[:300]
    first = build_events(subset, today=TODAY, seed=7)
    assert build_events(subset, today=TODAY, seed=7) == first
    assert build_events(subset, today=TODAY, seed=8) != first


def test_no_purchases_no_events() -> None:
    assert build_events([], today=TODAY, seed=1) == []


def test_events_are_sorted_json_small_and_uniquely_identified(events: list[Event]) -> None:
    times = [_time(event) for event in events]
    assert times == sorted(times)
    assert all(event["timestamp"].endswith("Z") for event in events)
    assert len({event["messageId"] for event in events}) == len(events)
    assert max(len(orjson.dumps(event)) for event in events) < MAX_EVENT_BYTES
    assert all(
        event["context"]["library"] == {"name": "airspace-demo", "version": "1"} for event in events
    )
    assert all("userId" in event or "anonymousId" in event for event in events)


def test_shift_puts_last_purchase_on_today(events: list[Event], purchases: list[Purchase]) -> None:
    orders = [event for event in events if event.get("event") == "Order Completed"]
    assert _time(orders[-1]).date() == TODAY
    shift = TODAY - date(1998, 6, 30)
    assert _time(orders[0]).date() == date(1997, 1, 1) + shift
    assert max(_time(event) for event in events) <= datetime(
        TODAY.year, TODAY.month, TODAY.day, 23, 59, 59, tzinfo=UTC
    )


def test_every_purchase_is_one_order(events: list[Event], purchases: list[Purchase]) -> None:
    shift = TODAY - date(1998, 6, 30)
    expected = Counter(
        (f"cdnow-{p.customer_id}", p.day + shift, p.revenue, p.quantity) for p in purchases
    )
    orders = [event for event in events if event.get("event") == "Order Completed"]
    got = Counter(
        (
            order["userId"],
            _time(order).date(),
            order["properties"]["revenue"],
            order["properties"]["quantity"],
        )
        for order in orders
    )
    assert got == expected
    assert len({order["properties"]["order_id"] for order in orders}) == len(purchases)
    assert all(order["properties"]["currency"] == "USD" for order in orders)


def test_identify_links_the_anonymous_visit_to_the_user(events: list[Event]) -> None:
    identifies = {event["userId"]: event for event in events if event["type"] == "identify"}
    assert len(identifies) == 2357
    first_order: dict[str, datetime] = {}
    for event in events:
        if event.get("event") == "Order Completed":
            first_order.setdefault(event["userId"], _time(event))
    owner = {identify["anonymousId"]: user for user, identify in identifies.items()}
    assert len(owner) == len(identifies)
    anonymous = [event for event in events if "userId" not in event]
    assert {event["type"] for event in anonymous} == {"page", "track"}
    for event in anonymous:
        user = owner[event["anonymousId"]]
        assert _time(event) <= _time(identifies[user]) < first_order[user]
    assert {owner[event["anonymousId"]] for event in anonymous} == set(identifies)
    viewed = [event for event in anonymous if event.get("event") == "Product Viewed"]
    assert {"product_id", "price", "category"} <= set(viewed[0]["properties"])


def test_traits_look_like_people(events: list[Event]) -> None:
    traits = [event["traits"] for event in events if event["type"] == "identify"]
    emails = [t["email"] for t in traits]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.com", email) for email in emails)
    phones = [t["phone"] for t in traits if "phone" in t]
    assert 0.5 < len(phones) / len(traits) < 0.7
    assert len(set(phones)) == len(phones)  # a shared phone would merge two people
    assert all(re.fullmatch(r"\+1[2-9]\d{2}55501\d{2}", phone) for phone in phones)
    assert {t["timezone"] for t in traits} <= {
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "America/Phoenix",
        "America/Anchorage",
        "Pacific/Honolulu",
    }
    for t in traits:
        born = date.fromisoformat(t["birthday"])
        assert TODAY - timedelta(days=81 * 365) < born < TODAY - timedelta(days=18 * 365)
        assert t["first_name"]
        assert t["last_name"]


def test_web_context_uses_documentation_addresses(events: list[Event]) -> None:
    network = ipaddress.ip_network("192.0.2.0/24")
    for event in events:
        context = event["context"]
        if "ip" in context:
            assert ipaddress.ip_address(context["ip"]) in network
        if event["type"] == "page":
            assert context["userAgent"]
            assert context["page"]["url"].startswith("https://shop.example.com/")
            assert event["properties"]["path"] == context["page"]["path"]


def _share(events: list[Event], users: set[str]) -> float:
    return len(users) / len({event["userId"] for event in events if event["type"] == "identify"})


def test_app_users_have_devices_with_push_tokens(events: list[Event]) -> None:
    screens = [event for event in events if event["type"] == "screen"]
    assert 0.25 < _share(events, {event["userId"] for event in screens}) < 0.35
    for screen in screens:
        device = screen["context"]["device"]
        assert device["type"] in ("ios", "android")
        assert re.fullmatch(r"[0-9a-f]{64}", device["token"])
        assert device["id"]
        assert screen["context"]["app"]["name"]
        assert screen["name"]
    tokens_per_user: dict[str, set[str]] = {}
    for screen in screens:
        tokens_per_user.setdefault(screen["userId"], set()).add(
            screen["context"]["device"]["token"]
        )
    assert all(len(tokens) == 1 for tokens in tokens_per_user.values())


def test_carts_and_consent(events: list[Event]) -> None:
    carts = [event for event in events if event.get("event") == "Cart Abandoned"]
    assert 0.15 < _share(events, {event["userId"] for event in carts}) < 0.25
    assert all(cart["properties"]["cart_id"] for cart in carts)
    opt_outs = [event for event in events if event.get("event") == "Consent Updated"]
    assert 0.03 < _share(events, {event["userId"] for event in opt_outs}) < 0.07
    assert all(
        event["properties"]
        == {"channel": "email", "status": "opted_out", "source": "preference-center"}
        for event in opt_outs
    )
    identifies = [event for event in events if event["type"] == "identify"]
    with_consent = [event for event in identifies if "consent" in event["context"]]
    assert 0.45 < len(with_consent) / len(identifies) < 0.55
    assert all(
        event["context"]["consent"] == {"categoryPreferences": {"email": True, "sms": False}}
        for event in with_consent
    )


_purchase = st.builds(
    Purchase,
    customer_id=st.integers(1, 40).map(lambda n: f"{n:05d}"),
    day=st.dates(date(1997, 1, 1), date(1998, 6, 30)),
    quantity=st.integers(1, 20),
    revenue=st.integers(0, 50_000).map(lambda cents: cents / 100),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    purchases=st.lists(_purchase, min_size=1, max_size=30),
    today=st.dates(date(2000, 1, 1), date(2090, 1, 1)),
    seed=st.integers(0, 2**32),
)
def test_any_purchases_give_one_order_each_ending_today(
    purchases: list[Purchase], today: date, seed: int
) -> None:
    events = build_events(purchases, today=today, seed=seed)
    orders = [event for event in events if event.get("event") == "Order Completed"]
    assert len(orders) == len(purchases)
    assert max(_time(order).date() for order in orders) == today
    assert [_time(e) for e in events] == sorted(_time(e) for e in events)
    assert len({event["messageId"] for event in events}) == len(events)


# --------------------------------------------------------------------------- replay


@dataclass
class Recorder:
    """What the fake tracking API saw, and what it answers to the first requests."""

    script: list[str] = field(default_factory=list)
    requests: int = 0
    batches: list[list[Event]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    sent_at: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def next_action(self) -> str:
        with self.lock:
            self.requests += 1
            return self.script.pop(0) if self.script else "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.recorder = recorder


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment: split writes meet delayed ACKs and cost ~40 ms each.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        recorder = self.server.recorder
        action = recorder.next_action()
        if action == "drop":
            self.close_connection = True  # hang up without an answer
            return
        if action == "429":
            self._answer(429, {"error": "slow down"}, {"Retry-After": "0"})
            return
        if action == "401":
            self._answer(401, {"error": "unknown write key"})
            return
        payload = json.loads(body)
        errors = [
            {"index": index, "messageId": item["messageId"], "reason": "rejected by the test"}
            for index, item in enumerate(payload["batch"])
            if item.get("event") == "Bad Event"
        ]
        with recorder.lock:
            recorder.batches.append(payload["batch"])
            recorder.headers.append(dict(self.headers))
            recorder.paths.append(self.path)
            recorder.sent_at.append(payload.get("sentAt"))
        self._answer(200, {"success": True, "errors": errors})

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    httpd = _Server(recorder)
    host, port = httpd.server_address[:2]
    recorder.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def some_events(events: list[Event]) -> list[Event]:
    return events[:1000]


def test_replay_delivers_every_event_once_after_a_rate_limit(
    server: Recorder, some_events: list[Event]
) -> None:
    server.script = ["429"]
    progress: list[int] = []
    result = replay_sync(
        some_events,
        base_url=server.url + "/",
        write_key="wk_test",
        batch_size=64,
        concurrency=4,
        progress=progress.append,
    )
    assert result.sent == len(some_events)
    assert result.rejected == 0
    assert result.seconds >= 0
    batches = 1000 // 64 + 1
    assert server.requests == batches + 1  # the rate-limited one was sent again
    assert len(server.batches) == batches
    received = [event for batch in server.batches for event in batch]
    assert Counter(e["messageId"] for e in received) == Counter(e["messageId"] for e in some_events)
    # Consecutive slices, each in timestamp order.
    by_start = sorted(server.batches, key=lambda batch: some_events.index(batch[0]))
    assert [event for batch in by_start for event in batch] == some_events
    assert sorted(progress) == sorted(len(batch) for batch in server.batches)
    assert sum(progress) == len(some_events)
    expected_auth = "Basic " + base64.b64encode(b"wk_test:").decode()
    assert all(h["Authorization"] == expected_auth for h in server.headers)
    assert all(h["Content-Type"] == "application/json" for h in server.headers)
    assert set(server.paths) == {"/v1/batch"}
    assert all(
        sent_at == batch[-1]["timestamp"]
        for sent_at, batch in zip(server.sent_at, server.batches, strict=True)
    )


def test_replay_counts_rejected_events(server: Recorder, some_events: list[Event]) -> None:
    # Two bad events in each of the five batches, acknowledged concurrently: the counts
    # of all workers must add up.
    mixed = [
        {**event, "type": "track", "event": "Bad Event"} if index % 10 in (0, 7) else event
        for index, event in enumerate(some_events[:50])
    ]
    result = replay_sync(mixed, base_url=server.url, write_key="wk", batch_size=10, concurrency=5)
    assert result.sent == 50
    assert result.rejected == 10


def test_replay_retries_a_dropped_connection(server: Recorder, some_events: list[Event]) -> None:
    server.script = ["drop"]
    result = replay_sync(some_events[:20], base_url=server.url, write_key="wk", concurrency=1)
    assert result.sent == 20
    assert server.requests == 2
    assert [e["messageId"] for e in server.batches[0]] == [e["messageId"] for e in some_events[:20]]


def test_replay_stops_on_a_refusal(server: Recorder, some_events: list[Event]) -> None:
    server.script = ["401"]
    with pytest.raises(ReplayError, match="401") as caught:
        replay_sync(some_events[:10], base_url=server.url, write_key="nope", concurrency=1)
    assert caught.value.status == 401
    assert "unknown write key" in caught.value.body


def test_replay_gives_up_when_always_rate_limited(
    server: Recorder, some_events: list[Event]
) -> None:
    server.script = ["429"] * 10
    with pytest.raises(ReplayError, match="rate-limited") as caught:
        replay_sync(some_events[:5], base_url=server.url, write_key="wk", concurrency=1)
    assert caught.value.status == 429
    assert server.requests == 6  # one try and five retries


def test_replay_of_nothing_sends_nothing(server: Recorder) -> None:
    result = replay_sync([], base_url=server.url, write_key="wk")
    assert (result.sent, result.rejected) == (0, 0)
    assert server.requests == 0


@pytest.mark.parametrize(("batch_size", "concurrency"), [(0, 1), (2501, 1), (10, 0)])
def test_replay_refuses_bad_settings(batch_size: int, concurrency: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        replay_sync(
            [],
            base_url="http://127.0.0.1:9",
            write_key="wk",
            batch_size=batch_size,
            concurrency=concurrency,
        )


async def _replay_with_coroutine(url: str, events: list[Event]) -> int:
    result = await replay(events, base_url=url, write_key="wk", batch_size=7, concurrency=2)
    return result.sent


def test_replay_is_awaitable(server: Recorder, some_events: list[Event]) -> None:
    assert asyncio.run(_replay_with_coroutine(server.url, some_events[:30])) == 30
    assert [len(batch) for batch in sorted(server.batches, key=len, reverse=True)] == [
        7,
        7,
        7,
        7,
        2,
    ]
