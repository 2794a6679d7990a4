"""The [cluster] section: defaults, value checks, and the rule that spans sections."""
from __future__ import annotations

import os

import pytest

from chathub.config import Config, ConfigError, parse_config
from chathub.config.cluster import ClusterConfig, RedisAddress, parse_redis_url

POSTGRES = '[storage]\nbackend = "postgres"\npostgres_dsn = "host=db dbname=chat"\n'


def test_off_by_default_with_the_documented_timings():
    cluster = Config().cluster
    assert not cluster.enabled
    assert (cluster.lease, cluster.heartbeat, cluster.check_interval, cluster.resync_interval) == (10.0, 3.0, 2.0, 5.0)
    assert cluster.address == RedisAddress("127.0.0.1", 6379, 0)
    assert cluster.max_ended_rooms == 100_000
    assert cluster.room_claim_wait == 5.0


def test_node_id_defaults_to_host_name_and_process_id():
    node_id = ClusterConfig().resolved_node_id()
    assert node_id.endswith(f"-{os.getpid()}") and "/" not in node_id
    assert ClusterConfig(node_id="n1").resolved_node_id() == "n1"


def test_cluster_mode_needs_history_on_postgres():
    with pytest.raises(ConfigError) as e:
        parse_config("[cluster]\nenabled = true\n")
    assert "cluster.enabled" in str(e.value) and 'storage.backend = "postgres"' in str(e.value)
    assert parse_config(POSTGRES + "[cluster]\nenabled = true\n").cluster.enabled
    # without history nothing is committed, so nothing crossed the nodes (nicks and presence
    # did: the nodes started, said chat crossed, and every room diverged)
    for storage in ("", POSTGRES):
        with pytest.raises(ConfigError) as e:
            parse_config(storage + "[history]\nenabled = false\n[cluster]\nenabled = true\n")
        assert "cluster.enabled" in str(e.value) and "history.enabled = true" in str(e.value)


def test_overrides_are_checked_against_the_rule_too():
    config = parse_config(POSTGRES + "[cluster]\nenabled = true\n")
    with pytest.raises(ConfigError, match="cluster.enabled"):
        config.with_overrides(history={"enabled": False})


@pytest.mark.parametrize(
    "table, key",
    [
        ("heartbeat = 6.0", "cluster.heartbeat"),  # more than half of the 10 s lease
        ("lease = 0.0", "cluster.lease"),
        ("check_interval = -1.0", "cluster.check_interval"),
        ('redis_url = "http://127.0.0.1:6379"', "cluster.redis_url"),
        ('redis_url = "redis://127.0.0.1:notaport"', "cluster.redis_url"),
        ('redis_url = "redis://127.0.0.1/db1"', "cluster.redis_url"),
        ('node_id = "a/b"', "cluster.node_id"),
        ('key_prefix = ""', "cluster.key_prefix"),
        ("max_ended_rooms = -1", "cluster.max_ended_rooms"),
        ("room_claim_wait = 0", "cluster.room_claim_wait"),
    ],
)
def test_bad_values_name_the_setting(table, key):
    with pytest.raises(ConfigError) as e:
        parse_config(POSTGRES + "[cluster]\n" + table + "\n")
    assert key in str(e.value)


def test_redis_urls():
    assert parse_redis_url("redis://h") == RedisAddress("h", 6379, 0)
    address = parse_redis_url("redis://user:p%40ss@[::1]:6380/3")
    assert address == RedisAddress("::1", 6380, 3, "user", "p@ss")
    assert str(address) == "redis://[::1]:6380/3"  # no password in logs
    assert parse_redis_url("redis://:secret@h").password == "secret"
