"""Delivery adapters: one small interface, `deliver(message) -> DeliveryResult`.

`capture` keeps messages in the store for viewing (the default, and what the
demo uses); `webhook` calls a URL over HTTP.
"""
