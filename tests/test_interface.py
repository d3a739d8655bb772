"""The declared interface of the scripts (tracker/interface.py): every call is built by
name and checked against its declaration, and every script reads names only."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from jobs import add

from tracker import Tracker, interface, scripts
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
    assert call.args[len(interface.HEAD) :] == ["1"]
    call = plans()._call("start", "a", reserve_for=None)
    assert call.args[len(interface.HEAD) :] == [""]


def test_the_layout_is_shared_keys_and_head_then_names_then_counts_then_lists() -> None:
    op = Operation(
        keys=("job",),
        args=("jid",),
        key_lists=(Many("pairs", ("a", "b")),),
        arg_lists=(Many("items"),),
    )
    keys, args = op.bind(
        ["S"], ["H"], {"job": "J", "jid": "j", "pairs": [("a1", "b1"), ("a2", "b2")], "items": [7]}
    )
    assert keys == ["S", "J", "a1", "b1", "a2", "b2"]
    assert args == ["H", "j", 2, 1, 7]
    prelude = scripts.prelude(op)
    shared, head = len(interface.SHARED_KEYS), len(interface.HEAD)  # in a real call
    assert f"local JOB = KEYS[{shared + 1}]" in prelude
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

    def recording(client: Any, op: str, keys: list[str], args: list[Any]) -> Any:
        called.append(op)
        return library_call(client, op, keys, args)

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
    assert len(call.keys) == len(interface.SHARED_KEYS) + size
