"""The one table of a job's hash fields (tracker/fields.py) and what comes from it: the
Lua constants, the decoding in records.py and the list in docs/development.md."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from tracker import fields, scripts
from tracker.fields import EVENT_FIELDS, FIELDS

DOCS = Path(__file__).parent.parent / "docs" / "development.md"
PACKAGE = resources.files("tracker")
#: Short quoted strings of the Lua that are not hash fields: the cycle check's node
#: kinds, Redis keywords, and what events carry besides the track.
NOT_FIELDS = {"S", "R", "DEL", "LT", "NX", *(f.stored for f in EVENT_FIELDS)}


def lua_sources() -> str:
    folder = PACKAGE / "lua"
    return "\n".join(p.read_text() for p in folder.iterdir() if p.name.endswith(".lua"))


def test_names_and_stored_names_are_unique_and_never_differ_by_case_alone() -> None:
    every = (*FIELDS, *EVENT_FIELDS)
    assert len({f.name for f in every}) == len(every)
    assert len({f.stored.lower() for f in every}) == len(every)
    assert {f.role for f in every} == {"track", "shown", "own", "event"}


def test_the_docs_list_every_field_as_the_table_has_it() -> None:
    text = DOCS.read_text()
    section = text[text.index("## The fields of a job's hash") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    expected = [line for line in fields.markdown().splitlines() if line.startswith("| `")]
    assert rows == expected


def test_every_field_the_lua_names_is_in_the_table() -> None:
    source = lua_sources()
    quoted = set(re.findall(r"'([A-Za-z]{1,3})'", source))
    accessed = set(re.findall(r"\b(?:h|c)\.([A-Za-z]+)\b", source))
    known = {f.stored for f in FIELDS}
    assert (quoted | accessed) - NOT_FIELDS <= known, (quoted | accessed) - NOT_FIELDS - known


def test_every_field_of_the_table_is_used() -> None:
    used = lua_sources() + "\n".join(
        p.read_text() for p in PACKAGE.iterdir() if p.name.endswith(".py") and p.name != "fields.py"
    )
    for f in FIELDS:
        named = (
            f"'{f.stored}'" in used
            or re.search(rf"\bh\.{f.stored}\b", used)
            or f"F_{f.name.upper()}" in used
            or f'stored("{f.name}")' in used
            or f'"{f.name}",' in used  # a tuple of names given to stored()
        )
        assert named, f"{f.name} ({f.stored}) is in the table but nothing uses it"


def test_the_library_gets_a_constant_per_field_and_the_track_fields_in_order() -> None:
    _, source = scripts.library()
    for f in FIELDS:
        assert f"local F_{f.name.upper()} = '{f.stored}'\n" in source
    track = ", ".join(f"F_{f.name.upper()}" for f in FIELDS if f.role == "track")
    assert f"local TRACK_FIELDS = {{{track}}}" in source
    assert "local TRACK_FIELDS" not in (PACKAGE / "lua" / "_common.lua").read_text()


def test_records_decodes_every_field_of_the_track() -> None:
    records = (PACKAGE / "records.py").read_text()
    for f in FIELDS:
        if f.role in ("track", "shown"):
            assert f'"{f.name}"' in records, f"records.py does not decode {f.name}"
