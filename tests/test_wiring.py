"""How the server is put together: the hub gets its account directory and account_creator when
it is made, and building the portal changes nothing else."""
from __future__ import annotations

from twisted.cred import strcred

from chathub.app import ChathubService
from chathub.auth.portal import account_directory, build_portal
from chathub.config import Config
from chathub.hub.service import ChatHub


def test_build_portal_leaves_the_hub_alone():
    config = Config().with_overrides(auth={"checkers": []})
    hub = ChatHub(config)
    accounts, account_creator = hub.accounts, hub.account_creator
    build_portal(hub, config, [strcred.makeChecker("memory:bob:pw")])
    assert hub.accounts is accounts and hub.account_creator is account_creator
    assert not hub.accounts.is_account("bob")  # the directory is the constructor's business


def test_the_account_directory_knows_every_checker():
    checkers = [strcred.makeChecker("memory:bob:pw"), strcred.makeChecker("memory:carol:pw")]
    hub = ChatHub(Config(), accounts=account_directory(checkers))
    assert hub.accounts.is_account("BOB") and hub.accounts.is_account("carol")
    assert not hub.accounts.is_account("dave")


def test_the_server_hands_the_hub_its_directory_and_registrar(tmp_path):
    config = Config().with_overrides(server={"data_dir": str(tmp_path)}, auth={"checkers": ["store"]})
    server = ChathubService(config, [strcred.makeChecker("memory:bob:pw")])
    assert server.hub.account_creator is server.accounts
    assert server.hub.accounts.is_account("bob")


def test_irc_over_tcp_and_websocket_are_one_irc_server(tmp_path):
    """app.py builds one IrcServer and hands it to the IRC and the HTTP/WebSocket listener."""
    # no password file: its checker re-reads it every 5 s from the moment it is made, and
    # nothing stops that loop before the reactor stops (it would run on into other tests)
    config = Config().with_overrides(server={"data_dir": str(tmp_path)}, auth={"checkers": ["store"]})
    server = ChathubService(config, [strcred.makeChecker("memory:bob:pw")])
    irc = server.irc
    assert server.factories["irc"].server is irc
    assert server.factories["http"].websocket_factory.irc is irc
    assert irc.hub is server.hub and irc.portal.portal is server.portal and irc.config is config


def test_chathub_knows_its_installed_version():
    from importlib import metadata

    import chathub

    assert chathub.__version__ == metadata.version("chathub")
