"""The network layer: the only package that imports pynetdicom internals.

pynetdicom provides the state machine, negotiation and DIMSE; the Rust
framer (``gateway._rust.Receiver``) replaces its per-PDU read loop and hands
it one complete DIMSE message at a time (DESIGN §2). ``receive_path =
"pynetdicom"`` in config falls back to pynetdicom's own loop.
"""
