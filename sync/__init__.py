"""Peer sync: one transport-free backend (``backend``), our protocol (``wire``) served and
spoken over HTTP with aiohttp (``server``, ``client``)."""
