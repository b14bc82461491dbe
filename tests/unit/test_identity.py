"""Identity: which identifiers an event carries, and the rules that resolve them to profiles."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airspace.domain.events import EventType
from airspace.domain.identity import (
    Identifier,
    IdentityRules,
    KnownProfile,
    Resolution,
    erasure_hash,
    extract_identifiers,
    is_junk,
    normalize_email,
    normalize_phone,
    resolve,
    violations,
)
from tests.unit.identity_model import EPOCH, IdentityModel, make_event

RULES = IdentityRules()
TIGHT = IdentityRules(
    limits={"email": 2, "phone": 1, "push_token": 1, "device_id": 2, "anonymous_id": 2},
    default_limit=1,
)
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def ids(*keys: str) -> tuple[Identifier, ...]:
    """Identifiers from their `type:value` keys, in the given order."""
    return tuple(Identifier.parse(key) for key in keys)


def keys(identifiers: Iterable[Identifier]) -> list[str]:
    """The `type:value` keys, in the given order."""
    return [i.key for i in identifiers]


def profile(profile_id: str, age_rank: int, *owned: str) -> KnownProfile:
    """A known profile created `age_rank` seconds after the epoch, owning `owned`."""
    return KnownProfile(profile_id, EPOCH + timedelta(seconds=age_rank), frozenset(ids(*owned)))


def known(*profiles: KnownProfile) -> dict[Identifier, KnownProfile]:
    """The identifier → profile map `resolve` expects."""
    return {i: p for p in profiles for i in p.identifiers}


# --- extraction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "expected"),
    [
        pytest.param(
            "track",
            {"user_id": "u-1", "anonymous_id": "a-1"},
            ["user_id:u-1", "anonymous_id:a-1"],
            id="userId-and-anonymousId",
        ),
        pytest.param(
            "track", {"user_id": "  u-1 "}, ["user_id:u-1"], id="ids-are-trimmed-not-lowered"
        ),
        pytest.param(
            "identify",
            {"anonymous_id": "a-1", "traits": {"email": "  Ana@Example.COM "}},
            ["email:ana@example.com", "anonymous_id:a-1"],
            id="identify-email-trimmed-and-lowered",
        ),
        pytest.param(
            "identify",
            {"user_id": "u-1", "traits": {"phone": "+1 (202) 555-0147"}},
            ["user_id:u-1", "phone:+12025550147"],
            id="identify-phone-to-e164",
        ),
        pytest.param(
            "track",
            {"user_id": "u-1", "traits": {"email": "ana@example.com"}},
            ["user_id:u-1"],
            id="track-traits-are-not-the-person's",
        ),
        pytest.param(
            "group",
            {"user_id": "u-1", "traits": {"email": "billing@acme.com", "phone": "+12025550147"}},
            ["user_id:u-1"],
            id="group-traits-are-the-group's",
        ),
        pytest.param(
            "track",
            {
                "anonymous_id": "a-1",
                "context": {"traits": {"email": "Ana@example.com", "phone": "+44 20 7946 0000"}},
            },
            ["email:ana@example.com", "phone:+442079460000", "anonymous_id:a-1"],
            id="context-traits-on-any-event",
        ),
        pytest.param(
            "identify",
            {
                "user_id": "u-1",
                "traits": {"email": "ana@example.com"},
                "context": {"traits": {"email": "ANA@example.com"}},
            },
            ["user_id:u-1", "email:ana@example.com"],
            id="same-email-twice-is-one-identifier",
        ),
        pytest.param(
            "screen",
            {"anonymous_id": "a-1", "context": {"device": {"id": "dev-1", "token": "tok-1"}}},
            ["push_token:tok-1", "device_id:dev-1", "anonymous_id:a-1"],
            id="device-id-and-push-token",
        ),
        pytest.param(
            "track",
            {
                "user_id": "u-1",
                "context": {
                    "externalIds": [
                        {"type": "Loyalty", "id": 7, "collection": "users"},
                        {"type": " CRM ", "id": "42", "encoding": "none"},
                    ]
                },
            },
            ["user_id:u-1", "ext:crm:42", "ext:loyalty:7"],
            id="external-ids-typed-and-lowered",
        ),
        pytest.param(
            "track",
            {
                "user_id": "u-1",
                "context": {
                    "externalIds": [
                        {"id": "1"},
                        "crm:2",
                        {"type": "", "id": "3"},
                        {"type": "   ", "id": "3b"},
                        {"type": "crm", "id": "null"},
                        {"type": "crm"},
                        {"type": 5, "id": "4"},
                        {"type": "x" * 65, "id": "5"},
                    ],
                    "device": "not-an-object",
                },
            },
            ["user_id:u-1"],
            id="malformed-external-ids-and-device-skipped",
        ),
        pytest.param(
            "identify",
            {
                "user_id": "u-1",
                "anonymous_id": "a-1",
                "traits": {"email": "ana@example.com", "phone": "+12025550147"},
                "context": {
                    "device": {"id": "dev-1", "token": "tok-1"},
                    "externalIds": [{"type": "crm", "id": "42"}],
                },
            },
            [
                "user_id:u-1",
                "email:ana@example.com",
                "phone:+12025550147",
                "ext:crm:42",
                "push_token:tok-1",
                "device_id:dev-1",
                "anonymous_id:a-1",
            ],
            id="everything-in-priority-order",
        ),
    ],
)
def test_extract_identifiers(kind: EventType, fields: dict[str, Any], expected: list[str]) -> None:
    assert keys(extract_identifiers(make_event(kind, **fields), RULES)) == expected


def test_extract_identifiers_uses_the_phone_region_for_national_numbers() -> None:
    event = make_event("identify", user_id="u-1", traits={"phone": "020 7946 0000"})
    assert keys(extract_identifiers(event, RULES)) == ["user_id:u-1"]
    british = IdentityRules(phone_region="GB")
    assert keys(extract_identifiers(event, british)) == ["user_id:u-1", "phone:+442079460000"]


JUNK_IDS = [
    "",
    "   ",
    "null",
    "NULL",
    "None",
    "nil",
    "undefined",
    "anonymous",
    "Anonymous",
    "unknown",
    "n/a",
    "0",
    "-1",
    "[object Object]",
    "{}",
    "[]",
    "NaN",
    "false",
    "true",
    "00000000-0000-0000-0000-000000000000",
    " undefined ",
]
JUNK_PLACES = {
    "userId": lambda v: make_event("track", user_id=v),
    "anonymousId": lambda v: make_event("track", anonymous_id=v),
    "device.id": lambda v: make_event("track", context={"device": {"id": v}}),
    "device.token": lambda v: make_event("track", context={"device": {"token": v}}),
    "externalIds.id": lambda v: make_event(
        "track", context={"externalIds": [{"type": "crm", "id": v}]}
    ),
}


@pytest.mark.parametrize("place", sorted(JUNK_PLACES))
@pytest.mark.parametrize("value", JUNK_IDS, ids=repr)
def test_junk_values_are_never_identifiers(place: str, value: str) -> None:
    assert is_junk(value)
    assert extract_identifiers(JUNK_PLACES[place](value), RULES) == []


@pytest.mark.parametrize(
    "value",
    [0, -1, True, False, None, [], {}, ["u-1"], {"id": "u-1"}, "x" * 513],
    ids=lambda value: repr(value)[:12],
)
def test_non_scalar_placeholder_and_oversized_device_ids_are_skipped(value: Any) -> None:
    event = make_event("track", context={"device": {"id": value, "token": value}})
    assert extract_identifiers(event, RULES) == []


@pytest.mark.parametrize(
    "value",
    ["", "null", "undefined", "test@test.com", "Email@Example.com", "noreply@example.com"],
    ids=repr,
)
def test_placeholder_emails_are_never_identifiers(value: str) -> None:
    event = make_event("identify", user_id="u-1", traits={"email": value})
    assert keys(extract_identifiers(event, RULES)) == ["user_id:u-1"]


@pytest.mark.parametrize(
    "value",
    ["u-1", "a5c0b1d2-0000-4000-8000-000000000001", "42", "ana", "Null Island"],
    ids=repr,
)
def test_real_values_that_look_close_to_junk_are_kept(value: str) -> None:
    assert not is_junk(value)
    assert keys(extract_identifiers(make_event("track", user_id=value), RULES)) == [
        f"user_id:{value}"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("ana@example.com", "ana@example.com", id="plain"),
        pytest.param("  Ana.Lima+news@Example.COM\t", "ana.lima+news@example.com", id="trim-lower"),
        pytest.param("ana", None, id="no-at"),
        pytest.param("ana@", None, id="no-domain"),
        pytest.param("ana@example", None, id="no-dot-in-domain"),
        pytest.param("ana lima@example.com", None, id="space-inside"),
        pytest.param("a@b@example.com", None, id="two-ats"),
        pytest.param("a" * 310 + "@example.com", None, id="longer-than-320"),
        pytest.param(42, None, id="a-number"),
        pytest.param(None, None, id="null"),
        pytest.param("test@test.com", None, id="placeholder"),
    ],
)
def test_normalize_email(raw: Any, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        pytest.param("+1 (202) 555-0147", None, "+12025550147", id="international-us"),
        pytest.param("+44 20 7946 0000", None, "+442079460000", id="international-gb"),
        pytest.param("+33 6 12 34 56 78", "US", "+33612345678", id="plus-wins-over-region"),
        pytest.param("020 7946 0000", "GB", "+442079460000", id="national-with-region"),
        pytest.param("020 7946 0000", None, None, id="national-without-region"),
        pytest.param(2025550147, "US", "+12025550147", id="a-json-number"),
        pytest.param("+1 000 000 0000", None, None, id="placeholder-of-possible-length"),
        pytest.param("+1 555 555 0100", None, None, id="no-such-area-code"),
        pytest.param("+1 202 555", None, None, id="too-short"),
        pytest.param("call me", None, None, id="words"),
        pytest.param("", None, None, id="empty"),
        pytest.param("+" + "4" * 40, None, None, id="longer-than-40"),
        pytest.param(True, "US", None, id="a-boolean"),
        pytest.param(["+12025550147"], None, None, id="a-list"),
    ],
)
def test_normalize_phone(raw: Any, region: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("email:ana@example.com", Identifier("email", "ana@example.com"), id="email"),
        pytest.param("user_id:a:b", Identifier("user_id", "a:b"), id="colon-in-value"),
        pytest.param("ext:crm:42", Identifier("ext:crm", "42"), id="external"),
    ],
)
def test_identifier_parse_and_key_round_trip(text: str, expected: Identifier) -> None:
    assert Identifier.parse(text) == expected
    assert Identifier.parse(text).key == text


@pytest.mark.parametrize("text", ["email", "email:", ":ana@example.com", ""], ids=repr)
def test_identifier_parse_explains_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"must look like type:value, e\.g\. email:"):
        Identifier.parse(text)


def test_rules_limits_and_ranks() -> None:
    rules = IdentityRules(limits={"user_id": 3, "email": 2}, default_limit=4)
    assert rules.limit("user_id") == 1  # never configurable: two userIds never share a profile
    assert rules.limit("email") == 2
    assert rules.limit("ext:crm") == 4
    assert [rules.rank(k) for k in ("user_id", "email", "ext:crm", "anonymous_id", "odd")] == [
        0,
        1,
        3,
        6,
        7,
    ]


def test_violations_name_the_type_and_the_limit() -> None:
    assert violations(ids("user_id:u-1", "user_id:u-2", "email:a@x.org"), RULES) == [
        "2 user_id identifiers (limit 1)"
    ]
    assert violations(ids("user_id:u-1", "email:a@x.org"), RULES) == []


def test_erasure_hash_is_keyed_and_stable() -> None:
    ana = Identifier("email", "ana@example.com")
    assert erasure_hash(ana, b"k1") == erasure_hash(Identifier.parse(ana.key), b"k1")
    assert erasure_hash(ana, b"k1") != erasure_hash(ana, b"k2")
    assert "ana" not in erasure_hash(ana, b"k1")


# --- resolve ----------------------------------------------------------------------------

SIX_EMAILS = [f"email:e{n}@example.org" for n in range(6)]


@pytest.mark.parametrize(
    ("event_ids", "profiles", "rules", "expected"),
    [
        pytest.param(
            ("user_id:u-1", "anonymous_id:a-1"),
            (),
            RULES,
            Resolution(None, link=ids("user_id:u-1", "anonymous_id:a-1")),
            id="no-match-new-profile",
        ),
        pytest.param(
            (),
            (),
            RULES,
            Resolution(None),
            id="no-identifiers-new-profile",
        ),
        pytest.param(
            ("user_id:u-1", "anonymous_id:a-1"),
            (profile("p1", 1, "anonymous_id:a-1"),),
            RULES,
            Resolution("p1", link=ids("user_id:u-1")),
            id="one-match-attach-the-new-ones",
        ),
        pytest.param(
            ("user_id:u-1", "anonymous_id:a-1"),
            (profile("p1", 1, "user_id:u-1", "anonymous_id:a-1"),),
            RULES,
            Resolution("p1"),
            id="all-known-nothing-to-link",
        ),
        pytest.param(
            ("anonymous_id:a-1", "email:x@example.org", "device_id:d-9"),
            (profile("p1", 2, "anonymous_id:a-1"), profile("p2", 1, "email:x@example.org")),
            RULES,
            Resolution("p2", merged=("p1",), link=ids("device_id:d-9")),
            id="several-merge-into-the-oldest",
        ),
        pytest.param(
            ("anonymous_id:a-1", "anonymous_id:a-2", "anonymous_id:a-3"),
            (
                profile("p3", 5, "anonymous_id:a-3"),
                profile("p1", 9, "anonymous_id:a-1"),
                profile("p2", 1, "anonymous_id:a-2"),
            ),
            RULES,
            Resolution("p2", merged=("p3", "p1")),
            id="three-merge-losers-oldest-first",
        ),
        pytest.param(
            ("anonymous_id:a-1", "anonymous_id:a-2"),
            (profile("pb", 1, "anonymous_id:a-1"), profile("pa", 1, "anonymous_id:a-2")),
            RULES,
            Resolution("pa", merged=("pb",)),
            id="same-age-lower-id-survives",
        ),
        pytest.param(
            ("user_id:u-1", SIX_EMAILS[5]),
            (profile("p1", 1, "user_id:u-1", *SIX_EMAILS[:5]),),
            RULES,
            Resolution("p1", dropped=ids(SIX_EMAILS[5])),
            id="email-limit-sixth-email-dropped",
        ),
        pytest.param(
            ("user_id:u-2", "anonymous_id:a-1"),
            (profile("p1", 1, "user_id:u-1", "anonymous_id:a-1"),),
            RULES,
            Resolution(None, link=ids("user_id:u-2"), dropped=ids("anonymous_id:a-1")),
            id="shared-device-new-profile-for-the-named-user",
        ),
        pytest.param(
            ("user_id:u-2", "anonymous_id:a-1"),
            (
                profile("p1", 1, "user_id:u-1", "anonymous_id:a-1"),
                profile("p2", 2, "user_id:u-2"),
            ),
            RULES,
            Resolution("p2", dropped=ids("anonymous_id:a-1")),
            id="shared-device-known-user-attach-without-merge",
        ),
        pytest.param(
            ("email:x@example.org", "anonymous_id:a-2"),
            (
                profile("p1", 1, "user_id:u-1", "email:x@example.org"),
                profile("p2", 2, "user_id:u-2", "anonymous_id:a-2"),
            ),
            RULES,
            Resolution("p1", dropped=ids("anonymous_id:a-2")),
            id="two-userids-never-merge-lowest-priority-dropped",
        ),
        pytest.param(
            ("user_id:u-2", "device_id:d-1", "anonymous_id:a-9"),
            (profile("p1", 1, "user_id:u-1", "device_id:d-1"),),
            RULES,
            Resolution(
                None, link=ids("user_id:u-2"), dropped=ids("anonymous_id:a-9", "device_id:d-1")
            ),
            id="drops-lowest-priority-first-until-within-limits",
        ),
        pytest.param(
            tuple(f"ext:crm:{n}" for n in range(1, 7)),
            (),
            RULES,
            Resolution(
                None,
                link=ids(*(f"ext:crm:{n}" for n in range(1, 6))),
                dropped=ids("ext:crm:6"),
            ),
            id="event-alone-over-a-limit",
        ),
        pytest.param(
            ("user_id:u-2", "anonymous_id:a-1"),
            (profile("p1", 1, "user_id:u-1", "anonymous_id:a-1"),),
            IdentityRules(limits={"user_id": 5}),
            Resolution(None, link=ids("user_id:u-2"), dropped=ids("anonymous_id:a-1")),
            id="userid-limit-is-one-whatever-configured",
        ),
        pytest.param(
            ("anonymous_id:a-1", "anonymous_id:a-2", "anonymous_id:a-3"),
            (profile("p1", 1, "anonymous_id:a-1"), profile("p2", 2, "anonymous_id:a-2")),
            TIGHT,
            Resolution("p1", merged=("p2",), dropped=ids("anonymous_id:a-3")),
            id="configured-limit-drops-the-new-one",
        ),
        pytest.param(
            ("email:e0@example.org", "anonymous_id:a-1"),
            (profile("p1", 1, *(f"email:e{n}@example.org" for n in range(3))),),
            TIGHT,
            Resolution("p1", link=ids("anonymous_id:a-1")),
            id="profile-above-a-lowered-limit-keeps-what-it-has",
        ),
        pytest.param(
            ("email:e0@example.org", "email:new@example.org"),
            (profile("p1", 1, *(f"email:e{n}@example.org" for n in range(3))),),
            TIGHT,
            Resolution("p1", dropped=ids("email:new@example.org")),
            id="profile-above-a-lowered-limit-does-not-grow",
        ),
        pytest.param(
            ("email:e0@example.org", "email:f0@example.org"),
            (
                profile("p1", 1, *(f"email:e{n}@example.org" for n in range(3))),
                profile("p2", 2, "email:f0@example.org"),
            ),
            TIGHT,
            Resolution("p1", dropped=ids("email:f0@example.org")),
            id="profile-above-a-lowered-limit-does-not-merge-past-it",
        ),
    ],
)
def test_resolve(
    event_ids: tuple[str, ...],
    profiles: tuple[KnownProfile, ...],
    rules: IdentityRules,
    expected: Resolution,
) -> None:
    given_ids = list(ids(*event_ids))
    assert resolve(given_ids, known(*profiles), rules) == expected
    # The answer never depends on the order the identifiers come in.
    assert resolve(given_ids[::-1], known(*profiles), rules) == expected


def test_strict_resolution_reports_the_conflict_instead_of_dropping() -> None:
    profiles = known(profile("p1", 1, "user_id:u-1"), profile("p2", 2, "user_id:u-2"))
    resolution = resolve(list(ids("user_id:u-1", "user_id:u-2")), profiles, RULES, strict=True)
    assert resolution == Resolution(
        None, conflict="would join 2 user_id identifiers (limit 1) on one profile"
    )


def test_strict_resolution_without_a_problem_is_the_same_as_lenient() -> None:
    profiles = known(profile("p1", 1, "anonymous_id:a-1"), profile("p2", 2, "user_id:u-1"))
    event_ids = list(ids("user_id:u-1", "anonymous_id:a-1"))
    assert resolve(event_ids, profiles, RULES, strict=True) == resolve(event_ids, profiles, RULES)
    assert resolve(event_ids, profiles, RULES, strict=True) == Resolution("p1", merged=("p2",))


# --- the rules played through the in-memory engine ---------------------------------------


def test_anonymous_visitor_then_login_attaches_and_keeps_the_history() -> None:
    model = IdentityModel()
    first = model.apply(make_event("page", anonymous_id="a-1"))
    login = model.apply(make_event("identify", user_id="u-1", anonymous_id="a-1"))
    later = model.apply(make_event("track", anonymous_id="a-1"))
    assert first.profile_id == login.profile_id == later.profile_id
    assert model.keys_of(first.profile_id or "") == {"anonymous_id:a-1", "user_id:u-1"}


def test_merge_keeps_the_oldest_profile_and_moves_every_identifier() -> None:
    model = IdentityModel()
    laptop = model.apply(make_event("page", anonymous_id="laptop")).profile_id
    phone = model.apply(
        make_event("identify", user_id="u-1", anonymous_id="phone", traits={"email": "a@x.org"})
    ).profile_id
    both = model.apply(make_event("track", anonymous_id="laptop", user_id="u-1"))
    assert both.resolution.merged == (phone,)
    assert both.profile_id == laptop
    assert model.partition() == {
        frozenset(ids("anonymous_id:laptop", "anonymous_id:phone", "user_id:u-1", "email:a@x.org"))
    }
    assert model.final(phone or "") == laptop


def test_shared_device_sends_events_to_the_named_user_and_merges_nothing() -> None:
    model = IdentityModel()
    ana = model.apply(make_event("identify", user_id="ana", anonymous_id="kiosk")).profile_id
    bo = model.apply(make_event("identify", user_id="bo", anonymous_id="kiosk"))
    bo_again = model.apply(make_event("track", user_id="bo", anonymous_id="kiosk"))
    anonymous = model.apply(make_event("track", anonymous_id="kiosk"))
    assert bo.profile_id is not None
    assert bo.profile_id != ana
    assert bo.resolution.dropped == ids("anonymous_id:kiosk")
    assert bo_again.profile_id == bo.profile_id
    assert bo_again.resolution.merged == ()
    assert anonymous.profile_id == ana  # the device stays with its first owner
    assert model.keys_of(ana or "") == {"user_id:ana", "anonymous_id:kiosk"}
    assert model.keys_of(bo.profile_id) == {"user_id:bo"}


def test_a_shared_email_never_joins_two_known_users() -> None:
    model = IdentityModel()
    family = {"email": "family@example.org"}
    ana = model.apply(make_event("identify", user_id="ana", traits=family)).profile_id
    bo = model.apply(make_event("identify", user_id="bo", traits=family)).profile_id
    assert ana != bo
    assert model.profile_of("email:family@example.org") == ana
    assert model.keys_of(bo or "") == {"user_id:bo"}


def test_an_event_with_only_junk_identifiers_belongs_to_nobody() -> None:
    model = IdentityModel()
    outcome = model.apply(
        make_event("identify", user_id="null", anonymous_id="undefined", traits={"email": ""})
    )
    assert outcome.profile_id is None
    assert outcome.refused == (
        "no usable identifier: userId and anonymousId are empty or placeholders"
    )
    assert model.created_at == {}
    assert model.partition() == frozenset()


def test_alias_joins_an_anonymous_history_to_a_user() -> None:
    model = IdentityModel()
    visitor = model.apply(make_event("page", anonymous_id="a-1")).profile_id
    user = model.apply(make_event("identify", user_id="u-1")).profile_id
    alias = model.apply(make_event("alias", user_id="u-1", previous_id="a-1"))
    assert alias.profile_id == visitor  # the anonymous profile is older
    assert alias.resolution.merged == (user,)
    assert model.keys_of(visitor or "") == {"anonymous_id:a-1", "user_id:u-1"}


def test_alias_of_an_unknown_previous_id_records_it_as_anonymous() -> None:
    model = IdentityModel()
    alias = model.apply(make_event("alias", user_id="u-1", previous_id="a-1"))
    assert model.keys_of(alias.profile_id or "") == {"anonymous_id:a-1", "user_id:u-1"}


def test_alias_to_the_same_user_id_adds_no_anonymous_id() -> None:
    model = IdentityModel()
    alias = model.apply(make_event("alias", user_id="u-1", previous_id="u-1"))
    assert model.keys_of(alias.profile_id or "") == {"user_id:u-1"}


@pytest.mark.parametrize(
    ("setup", "alias_from", "alias_to", "problem"),
    [
        pytest.param(
            [make_event("identify", user_id="u-1"), make_event("identify", user_id="u-2")],
            "u-1",
            "u-2",
            "2 user_id identifiers (limit 1)",
            id="two-known-user-ids",
        ),
        pytest.param(
            [make_event("identify", user_id="u-1")],
            "u-1",
            "u-2",
            "2 user_id identifiers (limit 1)",
            id="known-user-id-to-a-new-one",
        ),
        pytest.param(
            [
                make_event("identify", user_id="u-1", anonymous_id="a-1"),
                make_event("identify", user_id="u-2"),
            ],
            "a-1",
            "u-2",
            "2 user_id identifiers (limit 1)",
            id="anonymous-id-of-another-user",
        ),
        pytest.param(
            [
                make_event("identify", user_id="u-1", traits={"email": f"e{n}@x.org"})
                for n in range(3)
            ]
            + [
                make_event("identify", anonymous_id="a-1", traits={"email": f"f{n}@x.org"})
                for n in range(3)
            ],
            "a-1",
            "u-1",
            "6 email identifiers (limit 5)",
            id="would-pass-the-email-limit",
        ),
    ],
)
def test_strict_alias_reports_a_conflict_and_changes_nothing(
    setup: list[Any], alias_from: str, alias_to: str, problem: str
) -> None:
    model = IdentityModel()
    for event in setup:
        model.apply(event)
    before = model.partition()
    outcome = model.apply(make_event("alias", user_id=alias_to, previous_id=alias_from))
    assert outcome.profile_id is None
    assert outcome.resolution.conflict == f"would join {problem} on one profile"
    assert model.refused == [f"alias {outcome.resolution.conflict}"]
    assert model.partition() == before


# --- properties -------------------------------------------------------------------------

USER_IDS = ("u1", "u2", "u3")
ANONYMOUS_IDS = ("a1", "a2", "a3", "a4")
EMAILS = ("ana@example.org", "bo@example.org", "cy@example.org")
PHONES = ("+12025550101", "+12025550102", "+442079460000")
DEVICES = ("d1", "d2", "d3")
TOKENS = ("t1", "t2")
JUNK = ("null", "", "undefined", "0")


def _maybe(draw: st.DrawFn, pool: tuple[str, ...]) -> str | None:
    return draw(st.none() | st.sampled_from(pool + JUNK))


@st.composite
def any_event(draw: st.DrawFn) -> Any:
    """Any identify / track / alias over small pools: conflicts are likely."""
    kind = draw(st.sampled_from(["identify", "track", "alias"]))
    user_id = _maybe(draw, USER_IDS)
    previous_id = None
    if kind == "alias":
        user_id = draw(st.sampled_from(USER_IDS))
        previous_id = draw(st.sampled_from(USER_IDS + ANONYMOUS_IDS + JUNK))
    anonymous_id = _maybe(draw, ANONYMOUS_IDS)
    person = {"email": _maybe(draw, EMAILS), "phone": _maybe(draw, PHONES)}
    device = {"id": _maybe(draw, DEVICES), "token": _maybe(draw, TOKENS)}
    context: dict[str, Any] = {"device": device, "traits": {"email": _maybe(draw, EMAILS)}}
    return make_event(
        kind,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        traits=person if kind == "identify" else {},
        context=context,
    )


def _check_invariants(model: IdentityModel) -> None:
    owned = 0
    for pid, held in model.ids_of.items():
        assert violations(held, model.rules) == [], (pid, sorted(held))
        assert sum(1 for i in held if i.type == "user_id") <= 1
        assert all(model.owner[i] == pid for i in held)
        assert not any(is_junk(i.value) for i in held)
        owned += len(held)
    assert owned == len(model.owner)  # every identifier on exactly one live profile


@PROPERTY_SETTINGS
@given(rules=st.sampled_from([RULES, TIGHT]), events=st.lists(any_event(), max_size=25))
def test_any_sequence_keeps_limits_and_one_user_id_per_profile(
    rules: IdentityRules, events: list[Any]
) -> None:
    model = IdentityModel(rules=rules)
    for event in events:
        before = model.partition()
        outcome = model.apply(event)
        _check_invariants(model)
        if outcome.profile_id is None:
            # Refused: a strict alias that would pass a limit, or nothing usable at all.
            assert outcome.refused is not None
            assert (outcome.resolution.conflict is not None) == bool(outcome.identifiers)
            assert outcome.identifiers == () or event.type == "alias"
            assert model.partition() == before
            continue
        kept = set(outcome.identifiers) - set(outcome.resolution.dropped)
        assert all(model.owner[i] == outcome.profile_id for i in kept)
        if event.type != "alias" and event.user_id not in (None, *JUNK):
            # The userId is never what gets dropped: events go to the user they name.
            assert model.owner[Identifier("user_id", event.user_id)] == outcome.profile_id


@st.composite
def people_and_events(draw: st.DrawFn) -> tuple[list[frozenset[Identifier]], list[Any]]:
    """A ground truth of people (within the limits, at most one userId each) and events
    that each carry identifiers of one person only, so nothing ever conflicts."""
    people: list[dict[str, list[str]]] = []
    for p in range(draw(st.integers(1, 4))):
        people.append(
            {
                "user_id": [f"user-{p}"] if draw(st.booleans()) else [],
                "anonymous_id": [f"anon-{p}-{k}" for k in range(draw(st.integers(1, 3)))],
                "email": [f"p{p}.{k}@example.org" for k in range(draw(st.integers(0, 2)))],
                "phone": [f"+120255501{p}{k}" for k in range(draw(st.integers(0, 2)))],
                "device_id": [f"dev-{p}-{k}" for k in range(draw(st.integers(0, 2)))],
            }
        )
    events = []
    for n in range(draw(st.integers(1, 14))):
        person = people[draw(st.integers(0, len(people) - 1))]

        def pick(kind: str, person: dict[str, list[str]] = person) -> str | None:
            return draw(st.none() | st.sampled_from(person[kind])) if person[kind] else None

        kinds = ["identify", "track"] + (["alias"] if person["user_id"] else [])
        kind = draw(st.sampled_from(kinds))
        user_id, anonymous_id, previous_id = pick("user_id"), pick("anonymous_id"), None
        if kind == "alias":
            user_id, previous_id = (
                person["user_id"][0],
                draw(st.sampled_from(person["anonymous_id"])),
            )
        elif user_id is None and anonymous_id is None:
            anonymous_id = person["anonymous_id"][0]
        traits = {"email": pick("email"), "phone": pick("phone")}
        device = pick("device_id")
        events.append(
            make_event(
                kind,
                user_id=user_id,
                anonymous_id=anonymous_id,
                previous_id=previous_id,
                traits=traits if kind == "identify" else {},
                context={
                    "traits": traits if kind != "identify" else {},
                    "device": {"id": device} if device else {},
                },
                message_id=f"m-{n}",
            )
        )
    truth = [
        frozenset(Identifier(kind, value) for kind, values in person.items() for value in values)
        for person in people
    ]
    return truth, events


def _components(identifier_sets: list[set[Identifier]]) -> frozenset[frozenset[Identifier]]:
    """Connected components of 'seen on the same event' (union-find)."""
    parent: dict[Identifier, Identifier] = {}

    def root(i: Identifier) -> Identifier:
        while parent.setdefault(i, i) != i:
            i = parent[i]
        return i

    for group in identifier_sets:
        first, *rest = sorted(group)
        root(first)
        for other in rest:
            parent[root(other)] = root(first)
    blocks: dict[Identifier, set[Identifier]] = {}
    for i in list(parent):
        blocks.setdefault(root(i), set()).add(i)
    return frozenset(frozenset(b) for b in blocks.values())


def _play(events: list[Any]) -> IdentityModel:
    model = IdentityModel()
    for event in events:
        outcome = model.apply(event)
        assert outcome.refused is None
        assert outcome.resolution.dropped == ()
    return model


@PROPERTY_SETTINGS
@given(world=people_and_events(), data=st.data())
def test_without_conflicts_every_order_gives_the_same_profiles(
    world: tuple[list[frozenset[Identifier]], list[Any]], data: st.DataObject
) -> None:
    truth, events = world
    shuffled = data.draw(st.permutations(events), label="arrival order")
    in_order = _play(events).partition()
    assert _play(shuffled).partition() == in_order
    # ...and that partition is exactly "identifiers seen together", never across people.
    seen = [set(_play([event]).owner) for event in events]
    assert in_order == _components(seen)
    assert all(any(block <= person for person in truth) for block in in_order)
