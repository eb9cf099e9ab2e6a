"""Peer sync: one transport-free backend (``backend``) under two protocols on one port,
ours (``wire``; served with aiohttp by ``server``, spoken by ``client``) and Fossil's
(``xfer``, ``xferserver``, ``xferclient``)."""
