"""Replay the CDNOW purchase history as Segment events against a tracking API.

`load_cdnow` reads the purchases, `build_events` turns them into `Order Completed`
events surrounded by synthetic behaviour of the same customers (an anonymous visit
that an `identify` links to the user, app screens with push tokens, abandoned carts,
consent changes), and `replay` posts them to `/v1/batch` like any Segment client.
Everything is deterministic for a seed and a `today`.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx
import orjson

from airspace.domain.events import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES

Event = dict[str, Any]

DATA_DIR = Path(__file__).parent / "data"
CDNOW_MASTER = DATA_DIR / "CDNOW_master.txt"
CDNOW_SAMPLE = DATA_DIR / "CDNOW_sample.txt"

__all__ = [
    "CDNOW_MASTER",
    "CDNOW_SAMPLE",
    "DATA_DIR",
    "MAX_EVENT_BYTES",
    "Event",
    "Purchase",
    "ReplayError",
    "ReplayResult",
    "build_events",
    "load_cdnow",
    "replay",
    "replay_sync",
]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class Purchase:
    """One CDNOW purchase: who, which day, how many CDs, how many dollars."""

    customer_id: str
    day: date
    quantity: int
    revenue: float


_DIGITS = re.compile(r"[0-9]+")
_DAY = re.compile(r"[0-9]{8}")
_MASTER_FIELDS = "customer_id date number_of_cds dollar_value"
_SAMPLE_FIELDS = "customer_id sample_customer_index date number_of_cds dollar_value"


def load_cdnow(path: Path) -> list[Purchase]:
    """Read a CDNOW file (master with its header, or sample) into purchases, in file order."""
    purchases: list[Purchase] = []
    width: int | None = None
    # Undecodable bytes become U+FFFD so that they fail below with a file and line number.
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or (number == 1 and fields[0].lower() == "customer_id"):
                continue
            where = f"{path}, line {number}"
            if width is None:
                # The first data line decides the format; a file never mixes the two.
                if len(fields) not in (4, 5):
                    raise ValueError(
                        f"{where}: expected 4 fields ({_MASTER_FIELDS}) or 5 fields "
                        f"({_SAMPLE_FIELDS}), got {len(fields)}: {line.strip()!r}"
                    )
                width = len(fields)
            purchases.append(_parse_fields(fields, width, where, line))
    return purchases


def _parse_fields(fields: list[str], width: int, where: str, line: str) -> Purchase:
    names = _MASTER_FIELDS if width == 4 else _SAMPLE_FIELDS

    def bad(reason: str) -> ValueError:
        return ValueError(f"{where}: {reason} (expected {names}): {line.strip()!r}")

    if len(fields) != width:
        raise bad(f"expected {width} fields, got {len(fields)}")
    customer_id = fields[0]
    if not _DIGITS.fullmatch(customer_id):
        raise bad(f"customer_id {customer_id!r} is not a number")
    if width == 5 and not _DIGITS.fullmatch(fields[1]):
        raise bad(f"sample_customer_index {fields[1]!r} is not a number")
    day_text, quantity_text, revenue_text = fields[-3:]
    try:
        if not _DAY.fullmatch(day_text):
            raise ValueError
        day = date(int(day_text[:4]), int(day_text[4:6]), int(day_text[6:]))
    except ValueError:
        raise bad(f"date {day_text!r} is not a YYYYMMDD day") from None
    if not _DIGITS.fullmatch(quantity_text):
        raise bad(f"number_of_cds {quantity_text!r} is not a whole number")
    try:
        revenue = float(revenue_text)
    except ValueError:
        raise bad(f"dollar_value {revenue_text!r} is not a number") from None
    if not math.isfinite(revenue) or revenue < 0:
        raise bad(f"dollar_value {revenue_text!r} is not a non-negative amount")
    return Purchase(customer_id, day, int(quantity_text), revenue)


# --------------------------------------------------------------------------- events

LIBRARY: dict[str, str] = {"name": "airspace-demo", "version": "1"}
SITE = "https://shop.example.com"
_APP = {
    "name": "Groove Records",
    "version": "3.4.1",
    "build": "341",
    "namespace": "com.example.groove",
}

_FIRST_NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
    "Kate", "Luis", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Will", "Xenia", "Yusuf", "Zoe", "Marcus", "Lena", "Omar", "Nina",
)  # fmt: skip
_LAST_NAMES = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones",
    "Kim", "Lopez", "Miller", "Nguyen", "Okafor", "Patel", "Quinn", "Rossi", "Smith", "Tanaka",
    "Usman", "Varga", "Walker", "Xu", "Young", "Zhang", "Moreau", "Novak", "Silva", "Brown",
)  # fmt: skip
_CATEGORIES = (
    "Rock", "Pop", "Jazz", "Classical", "Country", "Hip-Hop", "Electronic", "Blues",
    "Soundtracks", "Folk", "R&B", "Reggae",
)  # fmt: skip
_TITLE_WORDS = (
    "Midnight", "Blue", "Electric", "Summer", "River", "Golden", "Silent", "Neon", "Velvet",
    "Highway", "Echoes", "Paper", "Moon", "Static", "Wild", "Hearts", "Open", "Road", "Glass",
    "Northern", "Lights", "Fever", "Dreams", "Harbor",
)  # fmt: skip
_SEARCHES = ("live album", "greatest hits", "vinyl", "jazz piano", "90s rock", "soundtrack")
_REFERRERS = (
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://news.example.org/best-albums",
    "https://mail.example.net/",
)
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
)
_SCREENS = ("Browse", "Product Detail", "Search", "Cart", "Order History")
_OS_VERSIONS = {"ios": ("iOS", ("16.7", "17.4", "17.5")), "android": ("Android", ("13", "14"))}

# US area codes whose 555-0100..555-0199 numbers pass libphonenumber's validation (those
# numbers are reserved for fiction), by time zone. Phones are handed out in turn over
# these 353 codes x 100 line numbers, so up to 35,300 customers get distinct phones:
# the identity rules treat a phone as an identifier, and a shared one would merge people.
_AREA_CODES_BY_ZONE: dict[str, tuple[int, ...]] = {
    "America/New_York": (
        201, 202, 203, 207, 212, 215, 216, 219, 220, 223, 227, 229, 231, 234, 239, 240, 248,
        252, 260, 267, 269, 270, 272, 276, 283, 301, 302, 304, 305, 313, 315, 317, 321, 324,
        326, 329, 330, 332, 336, 339, 347, 351, 352, 363, 364, 380, 386, 401, 404, 407, 410,
        412, 413, 419, 434, 440, 443, 445, 448, 463, 470, 472, 475, 478, 484, 502, 508, 513,
        516, 517, 518, 540, 551, 561, 567, 570, 571, 574, 582, 585, 586, 603, 606, 607, 609,
        610, 614, 616, 617, 631, 640, 645, 646, 656, 667, 678, 680, 681, 686, 703, 704, 706,
        716, 717, 718, 724, 727, 728, 732, 734, 740, 743, 754, 757, 762, 765, 770, 771, 772,
        774, 781, 786, 802, 803, 804, 810, 812, 813, 814, 821, 826, 828, 835, 838, 839, 843,
        845, 848, 850, 854, 856, 857, 859, 860, 862, 863, 864, 865, 878, 904, 906, 908, 910,
        912, 914, 917, 919, 929, 930, 934, 937, 941, 943, 947, 948, 954, 959, 973, 978, 980,
        984, 989,
    ),
    "America/Chicago": (
        205, 210, 214, 217, 218, 224, 225, 228, 235, 251, 254, 256, 262, 274, 281, 308, 309,
        312, 314, 316, 318, 319, 320, 325, 327, 331, 334, 337, 346, 353, 361, 402, 405, 409,
        414, 417, 423, 430, 432, 447, 464, 469, 479, 501, 504, 507, 512, 515, 531, 534, 539,
        557, 563, 572, 573, 580, 601, 608, 612, 615, 618, 620, 629, 630, 636, 641, 651, 659,
        660, 662, 682, 689, 708, 712, 713, 715, 726, 730, 731, 737, 763, 769, 773, 779, 785,
        806, 815, 816, 817, 830, 832, 847, 870, 872, 901, 903, 913, 918, 920, 931, 936, 938,
        940, 945, 952, 956, 972, 975, 979, 985,
    ),
    "America/Denver": (303, 307, 385, 406, 435, 505, 575, 719, 720, 748, 801, 915, 970, 983),
    "America/Los_Angeles": (
        206, 209, 213, 253, 279, 310, 323, 341, 350, 360, 369, 408, 415, 424, 425, 442, 458,
        503, 509, 510, 530, 541, 559, 562, 564, 619, 626, 628, 650, 657, 661, 669, 702, 707,
        714, 725, 738, 747, 760, 805, 818, 820, 831, 840, 858, 909, 916, 925, 949, 951, 971,
    ),
    "America/Phoenix": (480, 520, 602, 623, 928),
    "Pacific/Honolulu": (808,),
}  # fmt: skip
# Sorted by code so that consecutive customers land in mixed time zones.
_AREA_CODES: tuple[tuple[int, str], ...] = tuple(
    sorted((code, zone) for zone, codes in _AREA_CODES_BY_ZONE.items() for code in codes)
)
_ZONES = (*_AREA_CODES_BY_ZONE, "America/Anchorage")
_ZONE_WEIGHTS = (47, 29, 6, 15, 2, 0.5, 0.5)

PHONE_SHARE = 0.6
APP_SHARE = 0.3
CART_ABANDON_SHARE = 0.2
CONSENT_OPT_OUT_SHARE = 0.05
CONSENT_CONTEXT_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class _Product:
    product_id: str
    name: str
    category: str
    price: float


@dataclass(frozen=True, slots=True)
class _Person:
    user_id: str
    anonymous_id: str
    traits: dict[str, Any]
    timezone: str
    ip: str
    user_agent: str


@dataclass(slots=True)
class _Storyteller:
    """Draws one customer's events at a time from a single seeded RNG."""

    rng: random.Random
    shift: timedelta
    today: date
    horizon: datetime = field(init=False)
    catalog: tuple[_Product, ...] = field(init=False)
    phones_given: int = 0

    def __post_init__(self) -> None:
        # Nothing happens after the end of `today`: that is the present of the replay.
        self.horizon = datetime.combine(self.today, clock_time(23, 59, 59), UTC)
        self.catalog = tuple(self._product(number) for number in range(1, 401))

    def _product(self, number: int) -> _Product:
        words = self.rng.sample(_TITLE_WORDS, k=self.rng.randint(1, 3))
        price = self.rng.choice((7.99, 9.99, 11.99, 12.99, 13.99, 14.99, 16.99, 18.99))
        return _Product(f"cd-{number:05d}", " ".join(words), self.rng.choice(_CATEGORIES), price)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def between(self, start: datetime, end: datetime) -> datetime | None:
        span = int((min(end, self.horizon) - start).total_seconds() * 1000)
        if span <= 0:
            return None
        return start + timedelta(milliseconds=self.rng.randrange(span))

    def step(self) -> timedelta:
        return timedelta(seconds=self.rng.randint(5, 90), milliseconds=self.rng.randrange(1000))

    def customer(self, customer_id: str, purchases: list[Purchase]) -> list[tuple[datetime, Event]]:
        orders = sorted(
            ((self._time_of(purchase.day), purchase) for purchase in purchases),
            key=lambda pair: pair[0],
        )
        first, last = orders[0][0], orders[-1][0]
        person = self._person(customer_id)
        timed = self._first_visit(person, first)
        for number, (at, purchase) in enumerate(orders, start=1):
            timed.append((at, self._order(person, customer_id, number, at, purchase)))
        if self.rng.random() < APP_SHARE:
            timed.extend(self._app_sessions(person, first, last))
        if self.rng.random() < CART_ABANDON_SHARE:
            timed.extend(self._abandoned_carts(person, first, last))
        if self.rng.random() < CONSENT_OPT_OUT_SHARE:
            timed.extend(self._opt_out(person, first, last))
        return timed

    def _time_of(self, day: date) -> datetime:
        midnight = datetime.combine(day + self.shift, clock_time(), UTC)
        return midnight + timedelta(milliseconds=self.rng.randrange(86_400_000))

    def _person(self, customer_id: str) -> _Person:
        first_name = self.rng.choice(_FIRST_NAMES)
        last_name = self.rng.choice(_LAST_NAMES)
        # The customer number keeps emails distinct, as the identity rules need.
        suffix = re.sub(r"[^A-Za-z0-9]", "", customer_id).lstrip("0") or "0"
        traits: dict[str, Any] = {
            "email": f"{first_name}.{last_name}{suffix}@example.com".lower(),
            "first_name": first_name,
            "last_name": last_name,
        }
        if self.rng.random() < PHONE_SHARE:
            area, zone = _AREA_CODES[self.phones_given % len(_AREA_CODES)]
            line = (self.phones_given // len(_AREA_CODES)) % 100
            self.phones_given += 1
            traits["phone"] = f"+1{area}55501{line:02d}"
        else:
            zone = self.rng.choices(_ZONES, weights=_ZONE_WEIGHTS)[0]
        traits["timezone"] = zone
        age_days = self.rng.randint(18 * 365, 80 * 365)
        traits["birthday"] = (self.today - timedelta(days=age_days)).isoformat()
        return _Person(
            user_id=f"cdnow-{customer_id}",
            anonymous_id=self.new_id(),
            traits=traits,
            timezone=zone,
            ip=f"192.0.2.{self.rng.randint(1, 254)}",
            user_agent=self.rng.choice(_USER_AGENTS),
        )

    def _page(self, kind: str, referrer: str) -> tuple[dict[str, str], str, _Product | None]:
        product: _Product | None = None
        search = ""
        if kind == "Home":
            path, title = "/", "Groove Records"
        elif kind == "Category":
            category = self.rng.choice(_CATEGORIES)
            slug = re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
            path, title = f"/c/{slug}", f"{category} CDs | Groove Records"
        elif kind == "Search":
            term = self.rng.choice(_SEARCHES)
            path, search = "/search", "?q=" + term.replace(" ", "+")
            title = f"Search: {term} | Groove Records"
        else:
            product = self.rng.choice(self.catalog)
            path, title = f"/p/{product.product_id}", f"{product.name} | Groove Records"
        page = {
            "path": path,
            "referrer": referrer,
            "search": search,
            "title": title,
            "url": SITE + path + search,
        }
        return page, kind, product

    def _web(self, person: _Person, page: dict[str, str]) -> dict[str, Any]:
        return {
            "library": dict(LIBRARY),
            "userAgent": person.user_agent,
            "ip": person.ip,
            "page": dict(page),
            "locale": "en-US",
            "timezone": person.timezone,
        }

    def _first_visit(self, person: _Person, first_order: datetime) -> list[tuple[datetime, Event]]:
        # At most 4 pages, 4 product views and the identify, each at most 91 s apart:
        # starting 20 minutes early or more keeps the whole visit before the order.
        at = first_order - timedelta(seconds=self.rng.randint(20 * 60, 6 * 3600))
        count = self.rng.randint(1, 4)
        # A buyer has seen a product, so the visit ends on a product page.
        kinds = [
            self.rng.choice(("Home", "Category", "Search", "Product")) for _ in range(count - 1)
        ]
        kinds.append("Product")
        referrer = self.rng.choice(_REFERRERS)
        timed: list[tuple[datetime, Event]] = []
        for kind in kinds:
            page, name, product = self._page(kind, referrer)
            timed.append((at, self._page_event(person, at, name, page)))
            if product is not None:
                at += self.step()
                # Not signed in yet: only the anonymousId, which the identify links later.
                viewed = self._track(
                    person, at, "Product Viewed", _product_properties(product), signed_in=False
                )
                viewed["context"] = self._web(person, page)
                timed.append((at, viewed))
            referrer = page["url"]
            at += self.step()
        # The customer signs up at checkout: that identify links the visit to the user.
        checkout = _site_page("/checkout", "Checkout | Groove Records", referrer=referrer)
        timed.append((at, self._identify(person, at, checkout)))
        return timed

    def _page_event(self, person: _Person, at: datetime, name: str, page: dict[str, str]) -> Event:
        return {
            "type": "page",
            "name": name,
            "anonymousId": person.anonymous_id,
            "messageId": self.new_id(),
            "timestamp": _iso(at),
            "properties": dict(page),
            "context": self._web(person, page),
        }

    def _identify(self, person: _Person, at: datetime, page: dict[str, str]) -> Event:
        context = self._web(person, page)
        if self.rng.random() < CONSENT_CONTEXT_SHARE:
            context["consent"] = {"categoryPreferences": {"email": True, "sms": False}}
        return {
            "type": "identify",
            "userId": person.user_id,
            "anonymousId": person.anonymous_id,
            "messageId": self.new_id(),
            "timestamp": _iso(at),
            "traits": dict(person.traits),
            "context": context,
        }

    def _track(
        self,
        person: _Person,
        at: datetime,
        name: str,
        properties: dict[str, Any],
        *,
        signed_in: bool = True,
    ) -> Event:
        event: Event = {"type": "track", "event": name}
        if signed_in:
            event["userId"] = person.user_id
        event.update(
            anonymousId=person.anonymous_id,
            messageId=self.new_id(),
            timestamp=_iso(at),
            properties=properties,
        )
        return event

    def _order(
        self, person: _Person, customer_id: str, number: int, at: datetime, purchase: Purchase
    ) -> Event:
        # Sent by the shop's backend, which knows the user but not the browser.
        return {
            "type": "track",
            "event": "Order Completed",
            "userId": person.user_id,
            "messageId": self.new_id(),
            "timestamp": _iso(at),
            "properties": {
                "order_id": f"cdnow-{customer_id}-{number:04d}",
                "revenue": purchase.revenue,
                "quantity": purchase.quantity,
                "currency": "USD",
            },
            "context": {"library": dict(LIBRARY)},
        }

    def _app_sessions(
        self, person: _Person, first: datetime, last: datetime
    ) -> list[tuple[datetime, Event]]:
        kind = self.rng.choice(("ios", "android"))
        os_name, versions = _OS_VERSIONS[kind]
        device = {"id": self.new_id(), "type": kind, "token": f"{self.rng.getrandbits(256):064x}"}
        os_info = {"name": os_name, "version": self.rng.choice(versions)}
        # The app has its own anonymousId per install; sending it with the userId links it.
        install_id = self.new_id()
        ip = f"192.0.2.{self.rng.randint(1, 254)}"
        timed: list[tuple[datetime, Event]] = []
        for _ in range(self.rng.randint(1, 3)):
            at = self.between(first + timedelta(hours=1), last + timedelta(days=90))
            if at is None:
                break
            screens = ["Home", *self.rng.choices(_SCREENS, k=self.rng.randint(0, 3))]
            for screen in screens:
                properties: dict[str, Any] = {}
                if screen == "Product Detail":
                    properties = _product_properties(self.rng.choice(self.catalog))
                event: Event = {
                    "type": "screen",
                    "name": screen,
                    "userId": person.user_id,
                    "anonymousId": install_id,
                    "messageId": self.new_id(),
                    "timestamp": _iso(at),
                    "properties": properties,
                    "context": {
                        "library": dict(LIBRARY),
                        "app": dict(_APP),
                        "device": dict(device),
                        "os": dict(os_info),
                        "ip": ip,
                        "locale": "en-US",
                        "timezone": person.timezone,
                    },
                }
                timed.append((at, event))
                at += self.step()
        return timed

    def _abandoned_carts(
        self, person: _Person, first: datetime, last: datetime
    ) -> list[tuple[datetime, Event]]:
        timed: list[tuple[datetime, Event]] = []
        for _ in range(self.rng.randint(1, 2)):
            at = self.between(first + timedelta(hours=1), last + timedelta(days=60))
            if at is None:
                break
            products = self.rng.sample(self.catalog, k=self.rng.randint(1, 3))
            lines = [{**_product_properties(product), "quantity": 1} for product in products]
            event = self._track(
                person,
                at,
                "Cart Abandoned",
                {
                    "cart_id": self.new_id(),
                    "products": lines,
                    "value": round(sum(product.price for product in products), 2),
                    "currency": "USD",
                },
            )
            event["context"] = self._web(person, _site_page("/cart", "Cart | Groove Records"))
            timed.append((at, event))
        return timed

    def _opt_out(
        self, person: _Person, first: datetime, last: datetime
    ) -> list[tuple[datetime, Event]]:
        at = self.between(first + timedelta(hours=1), last + timedelta(days=180))
        if at is None:
            return []
        event = self._track(
            person,
            at,
            "Consent Updated",
            {"channel": "email", "status": "opted_out", "source": "preference-center"},
        )
        page = _site_page("/account/preferences", "Email preferences | Groove Records")
        event["context"] = self._web(person, page)
        return [(at, event)]


def _site_page(path: str, title: str, *, referrer: str = "") -> dict[str, str]:
    return {"path": path, "referrer": referrer, "search": "", "title": title, "url": SITE + path}


def _product_properties(product: _Product) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "name": product.name,
        "category": product.category,
        "price": product.price,
        "currency": "USD",
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_events(purchases: Iterable[Purchase], *, today: date, seed: int) -> list[Event]:
    """Segment events for the purchases and synthetic behaviour, shifted to end on `today`."""
    by_customer: dict[str, list[Purchase]] = {}
    for purchase in purchases:
        by_customer.setdefault(purchase.customer_id, []).append(purchase)
    if not by_customer:
        return []
    last_day = max(purchase.day for group in by_customer.values() for purchase in group)
    teller = _Storyteller(random.Random(seed), shift=today - last_day, today=today)
    timed: list[tuple[datetime, Event]] = []
    # Customers in a fixed order so that the RNG draws, and so the events, repeat exactly.
    for customer_id in sorted(by_customer):
        timed.extend(teller.customer(customer_id, by_customer[customer_id]))
    timed.sort(key=lambda pair: pair[0])  # stable: a customer's same-instant events keep order
    return [event for _, event in timed]


# --------------------------------------------------------------------------- replay

MAX_RETRIES = 5
_MAX_RETRY_AFTER_SECONDS = 60.0
_BACKOFF_SECONDS = 0.25
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Room for `{"batch":[...],"sentAt":"..."}` around the events.
_ENVELOPE_BYTES = 128


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: events acknowledged (rejected ones included), rejected, wall time."""

    sent: int
    rejected: int
    seconds: float


class ReplayError(RuntimeError):
    """The tracking API refused a batch, or stayed rate-limited or unreachable."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class _Batch:
    items: list[bytes]
    sent_at: str | None

    def body(self) -> bytes:
        envelope = b'{"batch":[' + b",".join(self.items) + b"]"
        if self.sent_at is not None:
            envelope += b',"sentAt":' + orjson.dumps(self.sent_at)
        return envelope + b"}"


def _batches(events: Iterable[Event], batch_size: int) -> Iterator[_Batch]:
    """Consecutive slices of at most `batch_size` events and at most the request size limit."""
    items: list[bytes] = []
    size = _ENVELOPE_BYTES
    last: Event | None = None
    for event in events:
        item = orjson.dumps(event)
        if items and (len(items) == batch_size or size + len(item) + 1 > MAX_REQUEST_BYTES):
            yield _Batch(items, _sent_at(last))
            items, size = [], _ENVELOPE_BYTES
        items.append(item)
        size += len(item) + 1
        last = event
    if items:
        yield _Batch(items, _sent_at(last))


def _sent_at(event: Event | None) -> str | None:
    # The replayed events carry their own timestamps, so the server never corrects them
    # for clock skew; the last one is a consistent "sent" time that needs no clock reading.
    value = event.get("timestamp") if event is not None else None
    return value if isinstance(value, str) else None


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        # Missing, or an HTTP date: back off exponentially instead.
        seconds = _BACKOFF_SECONDS * 2**attempt
    if not math.isfinite(seconds):
        seconds = _BACKOFF_SECONDS * 2**attempt
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def _rejected_count(response: httpx.Response, url: str) -> int:
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        # A 2xx that is not JSON is not a tracking API (a wrong base URL, a proxy page).
        raise ReplayError(
            f"POST {url} answered {response.status_code} with a body that is not JSON: "
            f"{response.text[:300]!r}",
            status=response.status_code,
            body=response.text,
        ) from None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    return len(errors) if isinstance(errors, list) else 0


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> int:
    """Post one batch until acknowledged; return how many of its events were rejected."""
    attempt = 0
    while True:
        try:
            response = await client.post(url, content=body)
        except httpx.TransportError as error:
            # Retrying after a timeout may send a batch twice; messageIds make that harmless.
            if attempt >= MAX_RETRIES:
                raise ReplayError(
                    f"POST {url} failed {attempt + 1} times; last error: {error!r}"
                ) from error
            await asyncio.sleep(_BACKOFF_SECONDS * 2**attempt)
            attempt += 1
            continue
        if response.status_code == 429:
            if attempt >= MAX_RETRIES:
                raise ReplayError(
                    f"POST {url} still rate-limited (429) after {attempt + 1} attempts: "
                    f"{response.text[:300]}",
                    status=429,
                    body=response.text,
                )
            await asyncio.sleep(_retry_delay(response, attempt))
            attempt += 1
            continue
        if not response.is_success:
            raise ReplayError(
                f"POST {url} answered {response.status_code}: {response.text[:500]}",
                status=response.status_code,
                body=response.text,
            )
        return _rejected_count(response, url)


async def replay(
    events: Iterable[Event],
    *,
    base_url: str,
    write_key: str,
    batch_size: int = 100,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Post events to `{base_url}/v1/batch` in consecutive batches, `concurrency` at a time."""
    if not 1 <= batch_size <= MAX_BATCH_EVENTS:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_EVENTS}, got {batch_size}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    url = base_url.rstrip("/") + "/v1/batch"
    started = time.perf_counter()
    # One generator shared by the workers: each takes the next batch, so batches leave in order
    # and the events are encoded only as they are needed.
    batches = _batches(events, batch_size)
    sent = rejected = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, rejected
        for batch in batches:
            # Await first: `rejected += await ...` would read `rejected` before the await
            # and lose the counts other workers add meanwhile.
            refused = await _post(client, url, batch.body())
            rejected += refused
            sent += len(batch.items)
            if progress is not None:
                progress(len(batch.items))

    async with httpx.AsyncClient(
        auth=httpx.BasicAuth(write_key, ""),
        headers={"Content-Type": "application/json", "User-Agent": "airspace-demo/1"},
        timeout=_TIMEOUT,
        limits=httpx.Limits(max_connections=concurrency),
    ) as client:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(worker(client))
        except ExceptionGroup as failure:
            # The first failure cancels the other workers; report it as itself, not a group.
            first = failure.exceptions[0]
            if len(failure.exceptions) == 1 or all(
                isinstance(error, ReplayError) for error in failure.exceptions
            ):
                raise first from None
            raise
    return ReplayResult(sent=sent, rejected=rejected, seconds=time.perf_counter() - started)


def replay_sync(
    events: Iterable[Event],
    *,
    base_url: str,
    write_key: str,
    batch_size: int = 100,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run `replay` to completion in a new event loop."""
    return asyncio.run(
        replay(
            events,
            base_url=base_url,
            write_key=write_key,
            batch_size=batch_size,
            concurrency=concurrency,
            progress=progress,
        )
    )
