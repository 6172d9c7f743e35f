"""axsync.api.wire: JSON -> model parsing, strict about types, tolerant about presence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axsync.api import jsonread, wire
from axsync.errors import MalformedReply
from axsync.model import Folder, Label, MailFlags

W = "GET /test"

MAIL = {
    "id": "ODBfMTE0XzEzNTY",
    "folderId": "80_114",
    "size": 2048,
    "date": "1744407421",
    "isUnread": False,
    "isFlagged": True,
    "isDraft": False,
    "isDeleted": False,
    "refwFlags": "re",
    "labelIds": ["40_71"],
    "messageId": "<a@b>",
    "subject": "Hello",
    "from": "A <a@b>",
    "hasAttachments": True,
    "snippet": "ignored",
    "attachments": [{"id": 1}],
}
FOLDER = {
    "id": "80_114",
    "name": "Inbox",
    "parentId": "80_1",
    "role": "inbox",
    "folderType": "mails",
    "accessMode": "local",
    "totalItems": 3,
    "unreadItems": 1,
    "folderSize": 9000,
    "permissions": ["l", "r"],
}


def test_mail_full() -> None:
    m = wire.parse_mail(MAIL, W)
    assert (m.id, m.folder_id, m.size, m.date) == ("ODBfMTE0XzEzNTY", "80_114", 2048, 1744407421)
    assert m.flags == MailFlags(is_unread=False, is_flagged=True, refw_flags="re")
    assert m.flags.answered
    assert m.label_ids == ("40_71",)
    assert (m.message_id, m.subject, m.from_, m.has_attachments) == (
        "<a@b>",
        "Hello",
        "A <a@b>",
        True,
    )
    assert m.conversation_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1744407421", 1744407421),
        (1744407421, 1744407421),
        (1744407421.0, 1744407421),
        ("2025-04-11T21:37:01Z", 1744407421),
        ("2025-04-11T21:37:01+00:00", 1744407421),
        ("2025-04-11T23:37:01+02:00", 1744407421),
        ("2025-04-11T21:37:01", 1744407421),  # naive: UTC
        (" 1744407421 ", 1744407421),
    ],
)
def test_mail_date_forms(value: object, expected: int) -> None:
    assert wire.parse_mail({**MAIL, "date": value}, W).date == expected


def test_mail_minimal_uses_model_defaults_and_context_folder() -> None:
    m = wire.parse_mail(
        {"id": "x", "size": 0, "date": 0, "subject": None}, W, default_folder="80_9"
    )
    assert m.folder_id == "80_9"
    assert m.flags == MailFlags()
    assert m.subject == "" and m.label_ids == ()


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"size": "2048"}, "size"),
        ({"size": True}, "size"),
        ({"size": -1}, "size"),
        ({"size": 1.5}, "size"),
        ({"date": "yesterday"}, "date"),
        ({"date": "--5"}, "date"),
        ({"date": "9" * 30}, "date"),
        ({"date": [1]}, "date"),
        ({"isUnread": "true"}, "isUnread"),
        ({"isFlagged": 1}, "isFlagged"),
        ({"labelIds": "40_71"}, "labelIds"),
        ({"labelIds": ["a", 3]}, "labelIds[1]"),
        ({"subject": 7}, "subject"),
        ({"folderId": None}, "folderId"),
    ],
)
def test_mail_wrong_types_name_endpoint_and_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedReply) as info:
        wire.parse_mail({**MAIL, **patch}, W)
    assert str(info.value).startswith(f"{W}: {field}:")
    assert info.value.details["endpoint"] == W


def test_missing_size_is_malformed() -> None:
    data = dict(MAIL)
    del data["size"]
    with pytest.raises(MalformedReply, match="size: required"):
        wire.parse_mail(data, W)


def test_mail_page_and_nested_paths() -> None:
    data = {
        "syncToken": "t1",
        "totalItems": 2,
        "sortInfo": {"field": "date", "direction": "ASC", "activeRowIndex": 0},
        "items": [MAIL, {**MAIL, "id": "two", "folderId": None}],
    }
    page = wire.parse_mail_page(data, W, "80_114")
    assert page.sync_token == "t1" and page.total_items == 2
    assert [m.id for m in page.items] == ["ODBfMTE0XzEzNTY", "two"]
    assert page.items[1].folder_id == "80_114"
    assert (page.sort_field, page.sort_direction) == ("date", "ASC")
    bad = {**data, "items": [MAIL, {**MAIL, "size": "x"}]}
    with pytest.raises(MalformedReply, match=r"items\[1\]\.size"):
        wire.parse_mail_page(bad, W, "80_114")
    with pytest.raises(MalformedReply, match="items: required"):
        wire.parse_mail_page({"syncToken": "t", "totalItems": 0}, W, "f")
    with pytest.raises(MalformedReply, match="syncToken"):
        wire.parse_mail_page({"totalItems": 0, "items": []}, W, "f")


def test_mail_delta_all_sections() -> None:
    data = {
        "syncToken": "d2",
        "moreAvailable": True,
        "totalItems": 9,
        "newItems": [{**MAIL, "conversationId": "c1"}],
        "replacedItems": [{**MAIL, "id": "r1"}],
        "updatedItems": [
            {
                "id": "u1",
                "folderId": "80_114",
                "isUnread": True,
                "isFlagged": False,
                "labelIds": ["l"],
            },
            {"id": "u2", "isDeleted": True, "conversationId": "c9"},
        ],
        "removedItems": [{"id": "x1", "folderId": "80_114"}, "x2"],
    }
    d = wire.parse_mail_delta(data, W, "80_114")
    assert d.sync_token == "d2" and d.more_available and d.total_items == 9
    assert d.new[0].conversation_id == "c1"
    assert d.replaced[0].id == "r1"
    assert d.updated[0].flags.is_unread and d.updated[0].label_ids == ("l",)
    assert d.updated[1].folder_id == "80_114" and d.updated[1].flags.is_deleted
    assert d.updated[1].conversation_id == "c9"
    assert d.removed == ("x1", "x2")
    empty = wire.parse_mail_delta({"syncToken": "d3"}, W, "f")
    assert empty.new == () and not empty.more_available
    with pytest.raises(MalformedReply, match=r"removedItems\[0\]"):
        wire.parse_mail_delta({"syncToken": "d", "removedItems": [3]}, W, "f")


def test_folders() -> None:
    assert wire.parse_folder(FOLDER, W) == Folder(
        "80_114", "Inbox", "80_1", "inbox", "mails", "local", 3, 1, 9000
    )
    listing = wire.parse_folder_list({"syncToken": "f1", "items": [FOLDER]}, W)
    assert listing.sync_token == "f1" and len(listing.items) == 1
    with pytest.raises(MalformedReply, match=r"items\[0\]\.parentId"):
        wire.parse_folder_list({"syncToken": "f1", "items": [{"id": "a", "name": "b"}]}, W)


def test_folder_delta_events() -> None:
    data = {
        "syncToken": "fd",
        "events": [
            {
                "eventType": "newFolder",
                "containerId": "80_1",
                "idValidity": 7,
                "pathChanged": False,
                "syncToken": "c1",
                **FOLDER,
            },
            {
                "eventType": "changedFolder",
                "id": "80_5",
                "containerId": "80_1",
                "idValidity": 8,
                "pathChanged": True,
                "oldParentId": "80_1",
                "name": "New",
                "parentId": "80_114",
                "totalItems": 4,
            },
            {"eventType": "changedFolder", "id": "80_6", "syncToken": "c7"},
            {"eventType": "removedFolder", "id": "80_7", "containerId": "80_1"},
            {"eventType": "resetContainer", "id": "80_1"},
            {"eventType": "removeContainer", "id": "90_1"},
        ],
    }
    d = wire.parse_folder_delta(data, W)
    new, moved, changed, removed, reset, gone = d.events
    assert new.folder is not None and new.folder.role == "inbox"
    assert new.id_validity == 7 and new.sync_token == "c1" and new.container_id == "80_1"
    assert moved.path_changed and moved.old_parent_id == "80_1"
    assert moved.folder is not None and moved.folder.parent_id == "80_114"
    assert changed.folder is None and changed.sync_token == "c7" and changed.id_validity is None
    assert removed.event_type == "removedFolder" and reset.event_type == "resetContainer"
    assert gone.id == "90_1" and gone.old_parent_id is None
    with pytest.raises(MalformedReply, match=r"events\[0\]\.eventType"):
        wire.parse_folder_delta({"syncToken": "x", "events": [{"id": "a"}]}, W)


def test_labels_shapes() -> None:
    full = wire.parse_label_list({"syncToken": "L1", "items": [{"id": "1", "name": "Work"}]}, W)
    assert full.sync_token == "L1" and full.items == (Label("1", "Work"),)
    no_token = wire.parse_label_list({"items": [{"id": "1", "name": "Work"}]}, W)
    bare = wire.parse_label_list([{"id": "1", "name": "Work"}], W)
    assert no_token.sync_token == bare.sync_token and bare.sync_token.startswith("axsync:")
    changed = wire.parse_label_list([{"id": "1", "name": "Play"}], W)
    assert changed.sync_token != bare.sync_token
    reordered = wire.parse_label_list([{"id": "2", "name": "B"}, {"id": "1", "name": "A"}], W)
    ordered = wire.parse_label_list([{"id": "1", "name": "A"}, {"id": "2", "name": "B"}], W)
    assert reordered.sync_token == ordered.sync_token
    with pytest.raises(MalformedReply, match="items"):
        wire.parse_label_list({"syncToken": "L1"}, W)


def test_conversations() -> None:
    conv = {
        "id": "c1",
        "subject": "S",
        "mailCount": "2",
        "mails": [
            {"mailId": "m1", "normalizedMessageId": "a@b", "folderId": "80_2", "isUnread": True},
            {"mailId": "m2", "folderId": "80_3"},
        ],
    }
    c = wire.parse_conversation(conv, W)
    assert c.mail_count == 2 and c.members[0].normalized_message_id == "a@b"
    assert c.members[1].folder_id == "80_3" and c.sync_token is None
    assert wire.parse_conversation({"id": "c", "mails": [{"mailId": "x"}]}, W).mail_count == 1
    page = wire.parse_conversation_page({"syncToken": "t", "totalItems": 1, "items": [conv]}, W)
    assert page.items[0].id == "c1"
    token, total, mails = wire.parse_conversation_mails(
        {"syncToken": "t", "totalItems": 1, "items": [MAIL]}, W
    )
    assert (token, total, mails[0].id) == ("t", 1, MAIL["id"])
    with pytest.raises(MalformedReply, match="mailCount"):
        wire.parse_conversation({**conv, "mailCount": "two"}, W)
    with pytest.raises(MalformedReply, match=r"mails\[0\]\.mailId"):
        wire.parse_conversation({"id": "c", "mails": [{"folderId": "x"}]}, W)


def test_batch_replies() -> None:
    sync = wire.parse_batch(
        {"batchOperationDetails": {"failedItems": ["a"]}, "status": "completed", "progress": 100},
        W,
        200,
        ("a", "b"),
    )
    assert sync.failed_items == ("a",) and not sync.is_async and sync.requested == ("a", "b")
    job = wire.parse_batch(
        {
            "batchOperationDetails": {"failedItems": []},
            "jobKey": "J1",
            "status": "inProgress",
            "progress": 0,
        },
        W,
        201,
        ("a",),
    )
    assert job.is_async and job.job_key == "J1" and job.status == "inProgress"
    flat = wire.parse_batch(
        {"failedItems": ["b", "a"], "batchOperationDetails": {"failedItems": ["a"]}}, W, 200, ()
    )
    assert flat.failed_items == ("a", "b") and flat.status == "completed" and flat.progress == 100.0
    assert wire.parse_batch(None, W, 201, ()).status == "inProgress"
    with pytest.raises(MalformedReply, match=r"batchOperationDetails\.failedItems\[0\]"):
        wire.parse_batch({"batchOperationDetails": {"failedItems": [1]}}, W, 200, ())


def test_account_server_index() -> None:
    info = wire.parse_server_info({"apiVersion": "1.2.0", "serverVersion": "10.6.20"}, W)
    assert info.has_mail_delta and info.has_folder_delta
    acc = wire.parse_account_info(
        {"accountName": "u", "domainName": "d", "folderContainerId": "80_1", "autopurge": {}}, W
    )
    assert acc.folder_container_id == "80_1" and acc.allow_conversation_view
    states = wire.parse_index_info([{"id": "conversation", "state": "uptodate", "progress": 1}], W)
    assert states[0].progress == 1.0
    assert (
        wire.parse_index_info({"items": [{"id": "sort", "state": "initialized"}]}, W)[0].progress
        == 0.0
    )
    with pytest.raises(MalformedReply, match="folderContainerId"):
        wire.parse_account_info({"accountName": "u", "domainName": "d"}, W)
    with pytest.raises(MalformedReply, match=r"\[0\]\.progress"):
        wire.parse_index_info([{"id": "c", "state": "x", "progress": "1"}], W)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>Service Unavailable</body></html>",
        b'{"syncToken": "t", ',
        b"\xff\xfe{}",
        b'{"a": "\xc3\x28"}',
        b"NaN",
        b'{"size": Infinity}',
        b"[" * 100_000,
    ],
)
def test_decode_json_rejects(body: bytes) -> None:
    with pytest.raises(MalformedReply) as info:
        jsonread.decode_json(body, W)
    assert W in str(info.value)


def test_decode_json_accepts_bom() -> None:
    assert jsonread.decode_json(b'\xef\xbb\xbf{"a": 1}', W) == {"a": 1}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"error": {"code": "NOT_FOUND", "message": "no such mail"}}', "no such mail"),
        (b'{"error": {"code": "BAD"}}', "BAD"),
        (b'{"message": "m"}', "m"),
        (b'{"error": "e"}', "e"),
        (b"<html>x</html>", "(HTML page)"),
        (b"plain\nsecond", "plain"),
        (b"", ""),
        (b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
def test_error_text(body: bytes, text: str) -> None:
    assert jsonread.error_text(body) == text


# ---------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
PARSERS = [
    lambda d: wire.parse_sessid(d, W),
    lambda d: wire.parse_server_info(d, W),
    lambda d: wire.parse_account_info(d, W),
    lambda d: wire.parse_index_info(d, W),
    lambda d: wire.parse_sync_token(d, W),
    lambda d: wire.parse_folder(d, W),
    lambda d: wire.parse_folder_list(d, W),
    lambda d: wire.parse_folder_delta(d, W),
    lambda d: wire.parse_mail(d, W),
    lambda d: wire.parse_mail_page(d, W, "f"),
    lambda d: wire.parse_mail_delta(d, W, "f"),
    lambda d: wire.parse_label(d, W),
    lambda d: wire.parse_label_list(d, W),
    lambda d: wire.parse_conversation(d, W),
    lambda d: wire.parse_conversation_page(d, W),
    lambda d: wire.parse_conversation_mails(d, W),
    lambda d: wire.parse_batch(d, W, 200, ()),
]
FIELDS = sorted(
    {
        *MAIL,
        *FOLDER,
        "syncToken",
        "totalItems",
        "items",
        "events",
        "eventType",
        "newItems",
        "updatedItems",
        "removedItems",
        "mails",
        "mailId",
        "mailCount",
        "batchOperationDetails",
        "failedItems",
        "jobKey",
        "status",
        "progress",
        "sessid",
        "apiVersion",
        "serverVersion",
        "accountName",
        "domainName",
        "folderContainerId",
        "state",
        "idValidity",
        "pathChanged",
    }
)


def _only_malformed(parser: Any, data: object) -> None:
    try:
        parser(data)
    except MalformedReply:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARSERS), json_values)
def test_random_json_only_ever_raises_malformed(parser: Any, data: object) -> None:
    _only_malformed(parser, data)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(PARSERS),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
    st.sampled_from([MAIL, FOLDER, {"syncToken": "t", "totalItems": 1, "items": [MAIL]}]),
)
def test_mutated_valid_payloads_only_ever_raise_malformed(
    parser: Any, patch: dict[str, object], base: dict[str, object]
) -> None:
    _only_malformed(parser, {**base, **patch})


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_malformed(body: bytes) -> None:
    try:
        value = jsonread.decode_json(body, W)
    except MalformedReply:
        return
    assert json.loads(body.decode("utf-8-sig")) == value
