"""The rules of the business, pure: no I/O, no clock reads, no database, no HTTP.

events.py    parse and validate Segment-spec messages; resolve their time
identity.py  identifiers, junk values, and the resolve / merge rules
profiles.py  traits (last write by event time wins) and computed traits
consent.py   per channel and per topic consent, and how merges combine it
clock.py     the clock protocol: real in production, simulated in tests
errors.py    the AirspaceError family that the edges turn into answers
"""
