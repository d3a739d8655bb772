"""The declared interface of the scripts (tracker/interface.py): every call is built by
name and checked against its declaration, and every script reads names only."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from jobs import add

from tracker import State, Tracker, interface, scripts
from tracker.calls import Call
from tracker.interface import OPERATIONS, InterfaceError, Many, Operation
from tracker.settings import Settings
from tracker.upkeep import Upkeep


def lua_files() -> set[str]:
    folder = resources.files("tracker") / "lua"
    return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua") and p.name[0] != "_"}


def test_every_script_is_declared_and_every_declaration_has_its_script() -> None:
    assert set(OPERATIONS) == lua_files()


def test_the_library_builds_from_scripts_that_read_names_only() -> None:
    _, source = scripts.library()  # check_body ran on every script
    for name in OPERATIONS:
        body = (resources.files("tracker") / "lua" / f"{name}.lua").read_text()
        assert "KEYS[" not in body and "ARGV[" not in body
    assert "begin_hot" not in source


def test_a_script_that_reads_by_position_is_refused() -> None:
    with pytest.raises(InterfaceError, match="by position"):
        scripts.check_body("x", "return ARGV[9]", Operation(), "")


def test_a_declared_name_the_script_never_uses_is_refused() -> None:
    with pytest.raises(InterfaceError, match="ATTEMPT is declared but never used"):
        scripts.check_body("x", "return JOB", Operation(keys=("job",), args=("attempt",)), "")


def test_a_name_that_would_hide_one_of_the_library_is_refused() -> None:
    with pytest.raises(InterfaceError, match="BUDGET hides"):
        scripts.check_body("x", "return BUDGET", Operation(args=("budget",)), "local BUDGET")


def test_a_misspelt_name_is_refused() -> None:
    operation = Operation(keys=("job",), args=("attempt",))
    with pytest.raises(InterfaceError, match=r"\['ATTEMP'\] are not declared"):
        scripts.check_body("x", "-- JOB, ATTEMPT\nreturn {JOB, ATTEMPT, ATTEMP}", operation, "")


def test_a_name_declared_twice_is_refused_at_import() -> None:
    with pytest.raises(InterfaceError, match="twice"):
        Operation(keys=("job",), args=("job",))


def plans() -> Upkeep:
    from tracker.client import Plans

    return Plans(Settings(namespace="iface"))


def test_a_call_missing_an_argument_raises_where_it_is_built() -> None:
    with pytest.raises(InterfaceError, match=r"missing \['traceback'\]"):
        plans()._call(
            "fail", "a", error="e", error_type=None, retry=True, backoff=1000, attempt=None
        )


def test_a_call_with_an_unknown_argument_raises_where_it_is_built() -> None:
    with pytest.raises(InterfaceError, match=r"unknown \['percnt'\]"):
        plans()._call("start", "a", reserve_for=None, percnt=5)


def test_a_group_of_the_wrong_members_raises() -> None:
    with pytest.raises(InterfaceError, match="updates"):
        plans()._call("track_set_many", jobs=["k"], updates=[{"percent": 5}])


def test_values_become_what_scripts_read() -> None:
    call = plans()._call("retry", "a", revive=True)
    assert call.own_args == ["1"]
    call = plans()._call("start", "a", reserve_for=None)
    assert call.own_args == [""]


def test_the_layout_is_head_then_names_then_counts_then_lists() -> None:
    op = Operation(
        keys=("job",),
        args=("jid",),
        key_lists=(Many("pairs", ("a", "b")),),
        arg_lists=(Many("items"),),
    )
    keys, args = op.bind(
        ["T", "N"], {"job": "J", "jid": "j", "pairs": [("a1", "b1"), ("a2", "b2")], "items": [7]}
    )
    assert keys == ["J", "a1", "b1", "a2", "b2"]
    assert args == ["T", "N", "j", 2, 1, 7]
    prelude = scripts.prelude(op)
    head = len(interface.HEAD)  # in a real call
    assert "local JOB = KEYS[1]" in prelude
    assert f"local JID = ARGV[{head + 1}]" in prelude
    assert "PAIRS[i] = {a = KEYS[k], b = KEYS[k + 1]}; k = k + 2" in prelude
    assert f"for i = 1, tonumber(ARGV[{head + 3}]) do ITEMS[i] = ARGV[a]" in prelude


def test_every_shared_key_and_every_declared_key_has_a_builder() -> None:
    keys = plans().keys
    assert len(keys.shared) == len(interface.SHARED_KEYS)
    for operation in OPERATIONS.values():
        for name in operation.keys:
            if name != "index":  # list_index is given the zset it walks
                assert keys.named(name, "a").startswith(keys.prefix)


def test_every_plan_builds_calls_its_scripts_accept(valkey_store: Tracker) -> None:
    """Each operation, driven through the public methods, reaches its script by name."""
    tracker = valkey_store
    called: list[str] = []
    library_call = tracker._library.call

    def recording(client: Any, call: Call) -> Any:
        called.append(call.script)
        return library_call(client, call)

    tracker._library.call = recording  # type: ignore[method-assign]
    tracker.register("batch", batch=True, labels={"team": "a"})
    tracker.register("child", parent="batch", labels={"team": "a"})
    tracker.register("dep", prerequisites=["child"], delay=0)
    tracker.enqueue(add, (1, 2), jid="paid", queue=f"{tracker.settings.namespace}-q")
    tracker.start("child", reserve_for=60)
    tracker.track_set("child", percent=10, desc="one")
    tracker.track_set_returning("child", percent=20)
    tracker.track_set_many([{"jid": "child", "percent": 30}])
    tracker.success("child")
    tracker.seal("batch")
    tracker.start("dep")
    tracker.fail("dep", "boom", retry=False)
    tracker.cancel("paid")
    tracker.retry("paid")
    tracker.cancel("paid")
    tracker.delete("paid")
    tracker.register("held")
    tracker.pause("held")
    tracker.resume("held")
    tracker.stats()
    tracker.list(state="enqueued")
    tracker.list(label="team=a")
    tracker.register("late")
    tracker.start("late")
    tracker.client.zadd(tracker.keys.reservations, {"late": 0})  # looks due: reap reads it
    tracker.maintain()
    tracker.worker_beat("worker-1", {"pid": 1}, interval=5.0)
    assert set(called) == set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_builds_a_call_from_its_declaration(name: str) -> None:
    operation = OPERATIONS[name]
    values: dict[str, Any] = {n: "x" for n in (*operation.keys, *operation.args)}
    for many in (*operation.key_lists, *operation.arg_lists):
        values[many.name] = [tuple("x" for _ in many.members) if many.members else "x"]
    call = plans()._call(name, "a", **values)
    assert isinstance(call, Call)
    size = len(operation.keys) + sum(m.width for m in operation.key_lists)
    if size:  # a call names the namespace's constants by their token
        assert len(call.keys) == size
        assert call.args[0] == call.constants.token
    else:  # a call with no key of its own carries them: its keys route it on a cluster
        assert len(call.keys) == len(interface.SHARED_KEYS)
        assert call.args[0] == "=" + call.constants.token
        assert len(call.args) == len(call.carrying().args)


def test_a_server_that_forgot_the_constants_is_sent_them_again(valkey_store: Tracker) -> None:
    """A library reloaded (as after a restart) holds no constants: the call that names
    them is answered UNBOUND and sent again carrying them, once; later calls name them."""
    tracker = valkey_store
    tracker.register("a")
    tracker.start("a")
    sent: list[str] = []
    fcall = tracker.client.fcall

    def recording(name: str, numkeys: int, *keys_and_args: Any) -> Any:
        sent.append(str(keys_and_args[numkeys]))
        return fcall(name, numkeys, *keys_and_args)

    tracker.client.fcall = recording  # type: ignore[method-assign]
    tracker.client.function_load(tracker._library.source, replace=True)  # forgets them
    tracker.track_set("a", percent=10)
    tracker.track_set("a", percent=20)
    token = tracker.plans.constants.token
    assert sent == [token, "=" + token, token]
    assert tracker.track_get("a").percent == 20


def test_namespaces_with_other_settings_keep_their_own_constants(valkey_store: Tracker) -> None:
    """Each namespace's calls read its own keys and settings, however many share a
    server (more than the library keeps at once: it forgets them all and is sent them)."""
    base = valkey_store.settings.namespace
    trackers = [
        Tracker(valkey_store.client, Settings(namespace=f"{base}-{i}", ttl=60 + i))
        for i in range(300)
    ]
    try:
        for tracker in trackers:
            tracker.register("a")
        for i, tracker in enumerate(trackers):
            tracker.start("a", reserve_for=1)  # expires 1 s after its TTL
            ttl_ms = tracker.client.pttl(tracker.keys.job("a"))
            assert (60 + i) * 1000 < ttl_ms <= (61 + i) * 1000
            assert tracker.state("a") is State.WORKING
    finally:
        made = list(valkey_store.client.scan_iter(match="{" + base + "-*", count=1000))
        valkey_store.client.delete(*made)
