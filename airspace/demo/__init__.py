"""Demo data: the CDNOW purchase history replayed as Segment events, with synthetic behaviour."""
