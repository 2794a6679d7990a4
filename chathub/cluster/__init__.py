"""Cluster mode: several chathub nodes sharing one hub (docs/cluster.md).

``chathub.cluster.redis`` holds ``RedisBackplane``; import it only when cluster mode is on
(``chathub.backplane.make_backplane`` does), because txredisapi installs the global reactor
when it is imported. Nothing in this package's ``__init__`` imports it.
"""
