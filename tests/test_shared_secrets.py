"""Secrets the nodes of a cluster share (``IStore.shared_secret``, chathub/store/sql/secrets.py):
the host cloak's key, so one address has one cloak on every node (the same with real nodes:
tests/test_cluster_presence.py)."""
from __future__ import annotations

import dataclasses

import pytest_twisted
from twisted.internet.defer import gatherResults

from chathub.auth.cloak import build_cloak, share_cloak_secret
from chathub.config import Config
from chathub.config.privacy import PrivacyConfig
from tests.store_fixtures import *  # noqa: F401,F403 (fixtures)


@pytest_twisted.ensureDeferred
async def test_the_first_secret_stored_under_a_name_is_every_later_askers(store_factory):
    store = await store_factory()
    assert await store.shared_secret("cloak", "first") == "first"
    assert await store.shared_secret("cloak", "second") == "first"
    assert await store.shared_secret("other", "second") == "second"
    # two asking at once (two nodes starting together) get one and the same
    both = await gatherResults([store.shared_secret("race", "x"), store.shared_secret("race", "y")])
    assert both in (["x", "x"], ["y", "y"])


@pytest_twisted.ensureDeferred
async def test_a_nodes_cloak_is_keyed_by_the_clusters_secret_unless_the_config_names_one(store_factory, tmp_path):
    store = await store_factory()
    plain = Config()
    config = dataclasses.replace(plain, server=dataclasses.replace(plain.server, data_dir=str(tmp_path)))
    first, second = build_cloak(config.privacy), build_cloak(config.privacy)
    assert first.host_for("192.0.2.7") != second.host_for("192.0.2.7")  # each its own key
    await share_cloak_secret(first, config, store)
    (tmp_path / config.privacy.cloak_secret_file).write_text("another node's file\n")
    await share_cloak_secret(second, config, store)
    assert first.host_for("192.0.2.7") == second.host_for("192.0.2.7")
    # a secret the config names is the operator's choice: kept as it is
    named = dataclasses.replace(config, privacy=PrivacyConfig(cloak_secret="x" * 32))
    own = build_cloak(named.privacy)
    before = own.host_for("192.0.2.7")
    await share_cloak_secret(own, named, store)
    assert own.host_for("192.0.2.7") == before != first.host_for("192.0.2.7")
