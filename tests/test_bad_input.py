"""Input that used to end in an unhandled error (issue 10, item 13) is answered in the
protocol's own terms, and a user of every protocol keeps chatting."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.support import HubServer


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    s = await HubServer.stored(tmp_path)
    yield s
    await s.stop()


@pytest_twisted.ensureDeferred
async def test_json_nested_deeper_than_the_parser_goes_is_an_error(server):
    watchers = await server.bystanders()
    guest = await server.ws("deep")
    guest.send_text('{"type":"ping","ref":' + "[" * 2000 + "]" * 2000 + "}")
    error = await guest.expect({"type": "error"})
    assert error["code"] == "bad_json" and "nested too deeply" in error["message"]
    # a ref is echoed into answers: nothing that could fail to encode is taken
    for ref in ([[[1]]], {"a": 1}, "x" * 65, 2**70):
        guest.send_json({"type": "ping", "ref": ref})
        error = await guest.expect({"type": "error"})
        assert error["code"] == "invalid_field" and error["field"] == "ref" and "ref" not in error
    guest.send_json({"type": "ping", "token": "still", "ref": "ok"})
    assert (await guest.expect({"type": "pong"}))["token"] == "still"
    assert guest.close_info is None
    await watchers.still_served()


@pytest_twisted.ensureDeferred
async def test_history_times_that_name_no_moment_are_invalid_fields(server):
    watchers = await server.bystanders("#hist")
    reader = await server.ws("reader", rooms=["#hist"])
    for field, raw in [("before", "1e999"), ("after", "-1e999"), ("before", "NaN"), ("after", "1e20"), ("before", "-5")]:
        reader.send_text(f'{{"type":"history","target":"#hist","{field}":{raw},"ref":"{field}{raw}"}}')
        error = await reader.expect({"type": "error", "ref": f"{field}{raw}"})
        assert error["code"] == "invalid_field" and error["field"] == field, error
    reader.send_json({"type": "history", "target": "#hist", "before": 4102444800, "ref": "fine"})
    page = await reader.expect({"type": "history", "ref": "fine"})
    assert page["events"] == [] or all("text" in e for e in page["events"])
    await watchers.still_served()


@pytest_twisted.ensureDeferred
async def test_http_paths_the_file_system_cannot_name_are_404(server):
    watchers = await server.bystanders()
    for path in ("/%00", "/js/%00.js", "/%00/x"):
        url = f"http://127.0.0.1:{server.http_port}{path}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            await threads.deferToThread(urllib.request.urlopen, url, timeout=10)
        assert refused.value.code == 404, path
    await watchers.still_served()
