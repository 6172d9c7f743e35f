"""Over HTTP: every ``/api/v1/batch/...`` endpoint."""

from __future__ import annotations

import time

import pytest

from .conftest import Api, add_mails, raw_message

COMPLETED = {"status": "completed", "progress": 100}


def _batch(api: Api, path: str, status: int = 200, **body: object) -> dict[str, object]:
    reply: dict[str, object] = api.call("POST", f"/api/v1/batch/{path}", status, json=body)
    return reply


def test_mail_batches_with_ids(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    sent, trash = mb.folder_id("Sent"), mb.folder_id("Trash")
    label = mb.create_label("L")
    ids = add_mails(mb, inbox, 3)
    reply = _batch(api, "mails/update", ids=[*ids, "nope"], isUnread=False)
    assert reply == {"batchOperationDetails": {"failedItems": ["nope"]}, **COMPLETED}
    assert not any(m.unread for m in mb.mails(inbox))
    _batch(api, "mails/labels/add", ids=ids[:2], labelId=label)
    assert [bool(m.label_ids) for m in mb.mails(inbox)] == [True, True, False]
    _batch(api, "mails/labels/remove", ids=ids, labelId=label)
    assert not any(m.label_ids for m in mb.mails(inbox))
    _batch(api, "mails/copy", ids=ids[:1], destinationFolderId=sent)
    assert len(mb.mails(sent)) == 1
    reply = _batch(api, "mails/move", ids=[ids[1], ids[1]], destinationFolderId=sent)
    assert reply["batchOperationDetails"] == {"failedItems": []}  # repeats count once
    _batch(api, "mails/delete", ids=[ids[2]])
    assert len(mb.mails(trash)) == 1
    _batch(api, "mails/delete", ids=[m.id for m in mb.mails(trash)])
    assert mb.mails(trash) == [] and len(mb.mails(inbox)) == 1


def test_mail_batch_ranges(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    ids = add_mails(mb, inbox, 10)
    reply = _batch(
        api,
        "mails/update",
        ranges=[{"start": ids[8], "limit": 3}, {"start": "gone", "limit": 2}],
        sortInfo={"field": "date", "direction": "DESC"},
        isFlagged=True,
    )
    assert reply["batchOperationDetails"] == {"failedItems": ["gone"]}
    assert [m.id for m in mb.mails(inbox) if m.flagged] == ids[6:9]
    _batch(api, "mails/update", ranges=[{"start": ids[0], "limit": 2}],
           sortInfo={"field": "date", "direction": "ASC"}, ids=[ids[9]], isUnread=False)
    assert [m.id for m in mb.mails(inbox) if not m.unread] == [ids[0], ids[1], ids[9]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("mails/delete", {}),
        ("mails/delete", {"ids": []}),
        ("mails/delete", {"ids": [1]}),
        ("mails/delete", {"ranges": [{"start": "x", "limit": 1}]}),  # ranges need sortInfo
        ("mails/delete", {"ranges": [{"start": "x", "limit": 0}], "sortInfo": {"field": "date", "direction": "ASC"}}),
        ("mails/delete", {"ranges": [{"start": "x", "limit": 1}], "sortInfo": {"field": "colour", "direction": "ASC"}}),
        ("mails/delete", {"ranges": [{"start": "x", "limit": 1}], "sortInfo": {"field": "date", "direction": "up"}}),
        ("mails/delete", {"ranges": [{"start": "x", "limit": 1, "sourceFolderId": "80_2"}],
                          "sortInfo": {"field": "date", "direction": "ASC"}}),
        ("mails/move", {"ids": ["x"]}),
        ("mails/move", {"ids": ["x"], "destinationFolderId": "80_999"}),
        ("mails/copy", {"ids": ["x"]}),
        ("mails/update", {"ids": ["x"]}),
        ("mails/update", {"ids": ["x"], "isUnread": "yes"}),
        ("mails/labels/add", {"ids": ["x"]}),
        ("mails/labels/remove", {"ids": ["x"], "labelId": "80_999"}),
        ("mails/delete", {"ids": ["x"], "labelId": "80_999"}),  # not a field of delete
        ("conversations/move", {"ids": ["x"]}),
        ("conversations/update", {"ids": ["x"]}),
        ("conversations/labels/add", {"ids": ["x"]}),
        ("conversations/delete", {"ranges": [{"start": "x", "limit": 1}],
                                  "sortInfo": {"field": "date", "direction": "ASC"}}),  # no sourceFolderId
    ],
)
def test_batch_validation(api: Api, path: str, body: dict[str, object]) -> None:
    assert api.error("POST", f"/api/v1/batch/{path}", 400, json=body) == "BAD_PARAMETER"


def test_no_conversation_copy(api: Api) -> None:
    api.error("POST", "/api/v1/batch/conversations/copy", 404, json={"ids": ["x"]})


def test_conversation_batches(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    archive = mb.add_folder("Archive")
    label = mb.create_label("L")
    for i in range(4):  # four two-mail threads
        mb.add_mail(inbox, raw_message(f"t{i}", message_id=f"t{i}@x"), date=10 * i)
        mb.add_mail(inbox, raw_message(f"Re: t{i}", in_reply_to=f"t{i}@x"), date=10 * i + 1)
    convs = list(mb.conversations())
    reply = _batch(api, "conversations/update", ids=[convs[0], "bm9wZQ"], isFlagged=True)
    assert reply["batchOperationDetails"] == {"failedItems": ["bm9wZQ"]}
    assert [mb.get_mail(i).flagged for i in mb.conversations()[convs[0]]] == [True, True]
    _batch(api, "conversations/labels/add", ids=convs[:2], labelId=label)
    _batch(api, "conversations/labels/remove", ids=convs[:1], labelId=label)
    assert [bool(mb.get_mail(mb.conversations()[c][0]).label_ids) for c in convs] == [False, True, False, False]
    _batch(api, "conversations/move", ids=[convs[1]], destinationFolderId=archive)
    assert len(mb.mails(archive)) == 2
    newest_first = [c["id"] for c in api.get("/api/v1/conversations", folderId=inbox)["items"]]
    _batch(api, "conversations/delete", ranges=[{"start": newest_first[0], "limit": 2, "sourceFolderId": inbox}],
           sortInfo={"field": "date", "direction": "DESC"})
    assert set(mb.conversations()) == {convs[0], convs[1]}


def test_big_batches_run_later(api: Api, inbox: str) -> None:
    knobs = api.fake.knobs
    knobs.async_batch_threshold, knobs.async_batch_delay = 3, 0.3
    ids = add_mails(api.fake.mailbox, inbox, 5)
    assert _batch(api, "mails/update", ids=ids[:3], isFlagged=True) == {
        "batchOperationDetails": {"failedItems": []}, **COMPLETED
    }
    reply = _batch(api, "mails/update", 201, ids=ids, isUnread=False)
    assert reply["status"] == "inProgress" and reply["progress"] == 0 and reply["jobKey"]
    assert reply["batchOperationDetails"] == {"failedItems": []}
    assert all(m.unread for m in api.fake.mailbox.mails(inbox))  # not yet
    deadline = time.monotonic() + 5
    while any(m.unread for m in api.fake.mailbox.mails(inbox)):
        assert time.monotonic() < deadline, "the delayed batch never ran"
        time.sleep(0.05)
    assert api.fake.service.pending_jobs() == 0
