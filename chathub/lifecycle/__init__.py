"""The running server's life as an operator sees it (assembly layer, beside ``chathub.app``):

- ``announce``: the block logged once every listener listens, saying how to reach each one;
- ``reload``: ``SIGHUP`` and IRC ``REHASH`` re-read the config file and apply what can change
  without dropping anyone, reporting what cannot;
- ``shutdown``: ``SIGTERM`` tells every connection on every protocol, stops accepting,
  flushes the store and exits within ``server.shutdown_timeout``;
- ``logs``: the JSON log observer (``[logging] format = "json"``) and the stable event names.
"""
