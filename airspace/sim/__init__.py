"""The customer-world simulator: a synthetic shop whose customers answer messages.

A *world* (`airspace.sim.world.World`) is a population of customers with a
hidden truth: how often each of them browses, abandons carts, buys and returns,
and how much each journey's message, on each channel, really changes their
chance of buying. A driver runs the world against the engine day by day:

    world.customers()  ->  identify calls (traits, consent, push tokens)
    world.day(start)   ->  the day's spontaneous tracking calls
    engine             ->  journeys propose, the controller sends
    world.deliver(msg) ->  the customer's response: purchases caused or
                           cancelled, unsubscribes
    world.truth()      ->  the scoreboard: expected incremental conversions
                           and revenue, cost, unsubscribes

Because the world knows the true uplift (`World.uplift`), policies can be
compared on what they really caused, and an oracle can be built that sends
exactly the messages worth sending.

    world.py            the protocol and the records that cross it
    worlds/standard.py  five customer types, eight colliding journeys
    worlds/misaligned.py  uplift driven by a hidden trait that no lifecycle stratum names
    definitions/        the workspace (journeys, segment, settings) the worlds are built for
"""
