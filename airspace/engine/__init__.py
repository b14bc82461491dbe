"""The worker: claims inbox work, loads a batch's state, calls the domain, commits effects.

apply.py    one batch, one transaction: identity → profile → consent → event log
worker.py   the loop that keeps claiming batches (threads in `serve`, processes at scale)
"""
