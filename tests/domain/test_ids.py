"""Identifier validation, parsing, ordering, archive names and target resolution."""

from __future__ import annotations

from datetime import date

import pytest

from loom.domain import ids
from loom.domain.ids import (
    ChangeId,
    SubModuleId,
    archive_dir_name,
    change_sort_key,
    module_of,
    normalize_module_ref,
    parse_archive_dir_name,
    parse_change_id,
    parse_module_id,
    parse_sub_module_id,
    resolve_change_target,
    sub_module_of,
    validate_capability,
    validate_change_id,
    validate_holder,
    validate_module_id,
    validate_org,
    validate_repo,
    validate_spec_id,
    validate_task_id,
)
from loom.errors import NotFound, ValidationError


def _rejects(fn: object, value: object, field: str) -> ValidationError:
    assert callable(fn)
    with pytest.raises(ValidationError) as info:
        fn(value)
    err = info.value
    assert err.kind == "invalid_id"
    assert err.details["field"] == field
    assert err.http_status == 400
    return err


def test_public_api_is_exported() -> None:
    for name in ids.__all__:
        assert hasattr(ids, name), name


# --------------------------------------------------------------------------- org / repo


@pytest.mark.parametrize("fn", [validate_org, validate_repo])
@pytest.mark.parametrize("value", ["a", "Acme", "acme-corp", "my.repo", "r_1", "9lives", "x" * 100])
def test_org_repo_valid(fn: object, value: str) -> None:
    assert callable(fn)
    assert fn(value) == value


@pytest.mark.parametrize(("fn", "field"), [(validate_org, "org"), (validate_repo, "repo")])
@pytest.mark.parametrize(
    "value",
    ["", ".", "..", ".hidden", "-dash", "_under", "a/b", "a b", "x" * 101, "é", "a\n", "a\\b"],
)
def test_org_repo_invalid(fn: object, field: str, value: str) -> None:
    _rejects(fn, value, field)


def test_non_string_is_rejected() -> None:
    _rejects(validate_org, 5, "org")
    _rejects(validate_change_id, None, "change_id")


def test_error_message_never_echoes_long_input() -> None:
    err = _rejects(validate_org, "!" * 5000, "org")
    assert len(err.message) < 250
    err = _rejects(parse_change_id, "x" * 300, "change_id")
    assert len(err.message) < 250
    err = _rejects(validate_holder, "\x00" * 1000, "holder")
    assert len(err.message) < 250


# --------------------------------------------------------------------------- change ids


@pytest.mark.parametrize(
    "value",
    [
        "001-01_a",
        "024-03_add-backend-project-bootstrap",
        "005.01-03_sub-change",
        "005-100_many",
        "005-1000_many",
        "000-00_x",
        "001-01_1password",
        "add-archive-command",
        "legacy",
        "a1-b2",
        "001-01_" + "a" * 121,
    ],
)
def test_change_id_valid(value: str) -> None:
    assert validate_change_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1-1_a",
        "001-1_a",
        "001-01_",
        "001-01_A",
        "001-01_a--b",
        "001-01_a-",
        "001-01_-a",
        "001-01_a_b",
        "001.1-01_a",
        "Add-Thing",
        "-lead",
        "trail-",
        "a--b",
        "../x",
        "a/b",
        "001-01_" + "a" * 122,
        "a" * 129,
        "٠٠١-٠١_a",
    ],
)
def test_change_id_invalid(value: str) -> None:
    _rejects(validate_change_id, value, "change_id")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4-7_Fix-Login", ChangeId("004", None, 7, "fix-login", "004-07_fix-login")),
        ("12.2-5_cache", ChangeId("012", "012.02", 5, "cache", "012.02-05_cache")),
        ("0012.002-0005_cache", ChangeId("012", "012.02", 5, "cache", "012.02-05_cache")),
        ("005-100_x", ChangeId("005", None, 100, "x", "005-100_x")),
        ("005-000100_x", ChangeId("005", None, 100, "x", "005-100_x")),
        ("005-00003_x", ChangeId("005", None, 3, "x", "005-03_x")),
        ("  024-03_add  ", ChangeId("024", None, 3, "add", "024-03_add")),
        ("999.99-1_z9", ChangeId("999", "999.99", 1, "z9", "999.99-01_z9")),
    ],
)
def test_parse_change_id_normalises(value: str, expected: ChangeId) -> None:
    parsed = parse_change_id(value)
    assert parsed == expected
    assert str(parsed) == expected.canonical
    assert validate_change_id(parsed.canonical) == parsed.canonical


def test_change_num_is_at_least_two_digits() -> None:
    assert parse_change_id("1-3_a").change_num == "03"
    assert parse_change_id("1-123_a").change_num == "123"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("x" * 257, "too long"),
        ("007_02_foo", "Invalid change ID format"),
        ("007-02", "missing name"),
        ("007.01-03", "Invalid change ID format"),
        ("007-02_", "missing name"),
        ("012_02-05_cache", "Invalid change ID format"),
        ("1000-01_x", "exceeds maximum (999)"),
        ("5.100-1_x", "exceeds maximum (99)"),
        ("abc-01_x", "Invalid change ID format"),
        ("1-2-3_x", "Invalid change ID format"),
        ("1-2_9lives", "must start with a letter"),
        ("1-2_a.b", "must start with a letter"),
        ("1-2_a_b", "must start with a letter"),
        ("1-2_a--b", "kebab-case"),
        ("1-2_a-", "kebab-case"),
        ("1-2_" + "a" * 125, "at most 128"),
        ("١-٢_a", "Invalid change ID format"),
    ],
)
def test_parse_change_id_rejects(value: str, fragment: str) -> None:
    err = _rejects(parse_change_id, value, "change_id")
    assert fragment in err.message


def test_wrong_separator_has_a_hint() -> None:
    err = _rejects(parse_change_id, "007_02_foo", "change_id")
    assert "'-'" in err.details["hint"]


# --------------------------------------------------------------------------- other ids


@pytest.mark.parametrize("fn", [validate_capability, validate_spec_id])
@pytest.mark.parametrize("value", ["a", "backend-auth", "cli.tasks", "x_y", "0abc", "a" * 128])
def test_capability_valid(fn: object, value: str) -> None:
    assert callable(fn)
    assert fn(value) == value


@pytest.mark.parametrize(
    ("fn", "field"), [(validate_capability, "capability"), (validate_spec_id, "spec_id")]
)
@pytest.mark.parametrize(
    "value", ["", "A", "-a", ".a", "_a", "a..b", "a/b", "a b", "a" * 129, "é", "a\\b"]
)
def test_capability_invalid(fn: object, field: str, value: str) -> None:
    _rejects(fn, value, field)


@pytest.mark.parametrize("value", ["1", "1.1", "Checkpoint", "A7", "x" * 64, "a b", "é"])
def test_task_id_valid(value: str) -> None:
    assert validate_task_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "x" * 65, "a/b", "a\\b", "a\nb", "a\rb", "a\x00", "\t1", "a\x7f", "a\x85"]
)
def test_task_id_invalid(value: str) -> None:
    _rejects(validate_task_id, value, "task_id")


@pytest.mark.parametrize("value", ["alice", "codex@host:123", "ünï", "x" * 200])
def test_holder_valid(value: str) -> None:
    assert validate_holder(value) == value


@pytest.mark.parametrize(
    "value",
    ["", " lead", "trail ", "agent 7", "tab\there", "new\nline", "nul\x00", "x" * 201, "\u2028"],
)
def test_holder_invalid(value: str) -> None:
    _rejects(validate_holder, value, "holder")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "001"),
        ("001", "001"),
        ("0001", "001"),
        ("999", "999"),
        ("1.2", "001.02"),
        ("024.01", "024.01"),
        ("24.1", "024.01"),
    ],
)
def test_validate_module_id_normalises(value: str, expected: str) -> None:
    assert validate_module_id(value) == expected


@pytest.mark.parametrize(
    "value", ["", "1000", "1.100", "abc", "1.", ".1", "1_name", "1-2", "١", "1" * 11, " 1"]
)
def test_validate_module_id_rejects(value: str) -> None:
    _rejects(validate_module_id, value, "module_id")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", "007"), ("0007", "007"), ("3_Auth-API", "003"), (" 12 ", "012"), ("999", "999")],
)
def test_parse_module_id(value: str, expected: str) -> None:
    assert parse_module_id(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "cannot be empty"),
        ("1000", "exceeds maximum (999)"),
        ("abc", "Invalid Module ID"),
        ("1_", "missing name"),
        ("1_9x", "must start with a letter"),
        ("x" * 300, "too long"),
    ],
)
def test_parse_module_id_rejects(value: str, fragment: str) -> None:
    err = _rejects(parse_module_id, value, "module_id")
    assert fragment in err.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7.3", SubModuleId("007.03", "007", "03", None)),
        ("007.003", SubModuleId("007.03", "007", "03", None)),
        ("24.1_Api-Core", SubModuleId("024.01", "024", "01", "api-core")),
    ],
)
def test_parse_sub_module_id(value: str, expected: SubModuleId) -> None:
    assert parse_sub_module_id(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("007-01", "expected NNN.SS"),
        ("abc.01", "Invalid Module ID"),
        ("007..01", "Invalid Sub-module number"),
        ("7.100", "exceeds maximum (99)"),
        ("7.1_", "missing name"),
    ],
)
def test_parse_sub_module_id_rejects(value: str, fragment: str) -> None:
    err = _rejects(parse_sub_module_id, value, "sub_module_id")
    assert fragment in err.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "001"), ("1.2", "001.02"), ("024_backend", "024"), ("024.01_core", "024.01")],
)
def test_normalize_module_ref(value: str, expected: str) -> None:
    assert normalize_module_ref(value) == expected


def test_normalize_module_ref_rejects() -> None:
    with pytest.raises(ValidationError):
        normalize_module_ref("payments")


# --------------------------------------------------------------------------- module_of / sort


@pytest.mark.parametrize(
    ("value", "module", "sub"),
    [
        ("024-03_x", "024", None),
        ("024.01-03_x", "024", "024.01"),
        ("4-7_fix", "004", None),
        ("001-01_1password", "001", None),
        ("add-archive-command", None, None),
        ("garbage id", None, None),
    ],
)
def test_module_of(value: str, module: str | None, sub: str | None) -> None:
    assert module_of(value) == module
    assert sub_module_of(value) == sub


def test_change_sort_key_is_numeric() -> None:
    shuffled = [
        "zeta-legacy",
        "005-100_c",
        "010-01_a",
        "005.01-01_y",
        "005-11_b",
        "alpha-legacy",
        "002-01_a",
        "005-07_x",
        "005-2_a",
        "005.10-01_z",
        "005.02-01_w",
    ]
    assert sorted(shuffled, key=change_sort_key) == [
        "002-01_a",
        "005-2_a",
        "005-07_x",
        "005-11_b",
        "005-100_c",
        "005.01-01_y",
        "005.02-01_w",
        "005.10-01_z",
        "010-01_a",
        "alpha-legacy",
        "zeta-legacy",
    ]


def test_change_sort_key_ties_break_on_slug() -> None:
    assert sorted(["024-10_b", "024-10_a"], key=change_sort_key) == ["024-10_a", "024-10_b"]


# --------------------------------------------------------------------------- archives


def test_archive_dir_name() -> None:
    day = date(2026, 3, 2)
    assert archive_dir_name(day, "024-03_add-x") == "2026-03-02-024-03_add-x"
    with pytest.raises(ValidationError):
        archive_dir_name(day, "../etc")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2026-03-02-024-03_add-x", (date(2026, 3, 2), "024-03_add-x")),
        ("2026-03-02-024.01-03_add-x", (date(2026, 3, 2), "024.01-03_add-x")),
        ("2025-08-13-add-archive-command", (date(2025, 8, 13), "add-archive-command")),
        ("2025-08-13-single", (date(2025, 8, 13), "single")),
        ("024-03_add-x", (None, "024-03_add-x")),
        ("add-archive-command", (None, "add-archive-command")),
        ("2025-13-45-foo-bar", (None, "2025-13-45-foo-bar")),
        ("noslug", None),
        (".hidden-dir", None),
        ("", None),
        ("2025-08-13-", None),
        ("2025-08-13-Bad_Name", None),
        ("Some Dir", None),
    ],
)
def test_parse_archive_dir_name(name: str, expected: tuple[date | None, str] | None) -> None:
    assert parse_archive_dir_name(name) == expected


def test_archive_name_round_trip() -> None:
    day = date(2026, 1, 31)
    for cid in ["001-08_allow-overflow", "019.01-01_gate", "add-archive-command"]:
        assert parse_archive_dir_name(archive_dir_name(day, cid)) == (day, cid)


# --------------------------------------------------------------------------- resolution

POOL = [
    "001-12_alpha-feature",
    "004-07_fix-login",
    "005-03_other",
    "005.01-03_sub-change",
    "005.01-04_another-sub",
    "024-10_first-dup",
    "024-10_second-dup",
    "add-archive-command",
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("004-07_fix-login", "004-07_fix-login"),
        ("  004-07_fix-login  ", "004-07_fix-login"),
        ("4-7", "004-07_fix-login"),
        ("004-07", "004-07_fix-login"),
        ("4-7_fix", "004-07_fix-login"),
        ("4-7_Fix-Log", "004-07_fix-login"),
        ("1 12", "001-12_alpha-feature"),
        ("1_12", "001-12_alpha-feature"),
        ("5-3", "005-03_other"),
        ("005.01-03", "005.01-03_sub-change"),
        ("5.1-3", "005.01-03_sub-change"),
        ("5.1-03_sub", "005.01-03_sub-change"),
        ("5.1:another", "005.01-04_another-sub"),
        ("5:sub change", "005.01-03_sub-change"),
        ("4:login", "004-07_fix-login"),
        ("Fix-Login", "004-07_fix-login"),
        ("4", "004-07_fix-login"),
        ("1", "001-12_alpha-feature"),
        ("004-0", "004-07_fix-login"),
        ("add-arch", "add-archive-command"),
        ("login", "004-07_fix-login"),
        ("fix login", "004-07_fix-login"),
        ("archive command", "add-archive-command"),
    ],
)
def test_resolve_unique(target: str, expected: str) -> None:
    assert resolve_change_target(target, POOL) == expected


def test_resolve_sub_module_selector_never_returns_module_change() -> None:
    # Upstream D-1: "005.01-03" became prefix "005-03" and returned 005-03_other.
    pool = ["005-03_other", "005.01-03_sub"]
    assert resolve_change_target("005.01-03", pool) == "005.01-03_sub"
    assert resolve_change_target("5.1-3", pool) == "005.01-03_sub"
    assert resolve_change_target("5-3", pool) == "005-03_other"
    with pytest.raises(NotFound):
        resolve_change_target("5.2-3", pool)


@pytest.mark.parametrize(
    ("target", "matches"),
    [
        ("24-10", ["024-10_first-dup", "024-10_second-dup"]),
        ("5", ["005-03_other", "005.01-03_sub-change", "005.01-04_another-sub"]),
        ("5.1", ["005.01-03_sub-change", "005.01-04_another-sub"]),
        ("5.1:sub", ["005.01-03_sub-change", "005.01-04_another-sub"]),
        ("024-10_", ["024-10_first-dup", "024-10_second-dup"]),
        ("dup", ["024-10_first-dup", "024-10_second-dup"]),
        ("5:other", ["005-03_other", "005.01-04_another-sub"]),
        (
            "00",
            [
                "001-12_alpha-feature",
                "004-07_fix-login",
                "005-03_other",
                "005.01-03_sub-change",
                "005.01-04_another-sub",
            ],
        ),
    ],
)
def test_resolve_ambiguous(target: str, matches: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        resolve_change_target(target, POOL)
    assert info.value.kind == "ambiguous_target"
    assert info.value.details["matches"] == matches
    assert info.value.http_status == 400
    assert "Ambiguous change target" in info.value.message


@pytest.mark.parametrize(
    "target",
    ["", "   ", "999", "9-9", "4-7_other", "5:nothing", "bogus:thing", "6.1", "zzz"],
)
def test_resolve_not_found(target: str) -> None:
    with pytest.raises(NotFound) as info:
        resolve_change_target(target, POOL)
    assert info.value.kind == "change_not_found"


def test_resolve_without_candidates() -> None:
    with pytest.raises(NotFound):
        resolve_change_target("001-01_a", [])


def test_resolve_exact_match_wins_over_numeric() -> None:
    pool = ["001-01_a", "001-01_ab"]
    assert resolve_change_target("001-01_a", pool) == "001-01_a"


def test_resolve_module_query_miss_stops_search() -> None:
    # "5:login" has no match in module 005; the later word step must not find 004-07.
    with pytest.raises(NotFound):
        resolve_change_target("5:login", POOL)


def test_resolve_prefix_is_case_sensitive_but_words_are_not() -> None:
    assert resolve_change_target("LOGIN", POOL) == "004-07_fix-login"


def test_resolve_accepts_any_iterable_and_dedupes() -> None:
    assert resolve_change_target("4-7", iter(["004-07_fix-login", "004-07_fix-login"])) == (
        "004-07_fix-login"
    )


def test_resolve_message_is_truncated() -> None:
    with pytest.raises(NotFound) as info:
        resolve_change_target("q" * 1000, POOL)
    assert len(info.value.message) < 200
