"""FastAPI apps: tracking (write keys, Segment-compatible) and admin (secret keys).

app.py        the application factory
tracking.py   /v1/track, /v1/batch, ... and the analytics.js paths
admin.py      /admin/v1/...: profiles, events, quarantine, merges, consent, erasure
auth.py       key checks
errors.py     AirspaceError → HTTP answers
"""
