"""Over HTTP: ``GET /api/v1/mails/delta``."""

from __future__ import annotations

from typing import Any

from .conftest import Api, add_mails, raw_message

DELTA_KEYS = {
    "syncToken", "totalItems", "sortInfo", "moreAvailable", "newItems", "replacedItems",
    "updatedItems", "removedItems",
}
UPDATED_KEYS = {"id", "folderId", "isUnread", "isFlagged", "isDraft", "isDeleted", "isItip", "labelIds", "conversationId"}


def _delta(api: Api, folder: str, token: str | None = None, **params: Any) -> Any:
    if token is not None:
        params["syncToken"] = token
    return api.get("/api/v1/mails/delta", folderId=folder, **params)


def test_first_round_then_changes(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    a, b, c = add_mails(mb, inbox, 3)
    first = _delta(api, inbox)
    assert set(first) == DELTA_KEYS and first["moreAvailable"] is False
    assert [m["id"] for m in first["newItems"]] == [a, b, c]
    assert all(m["conversationId"] for m in first["newItems"])
    assert first["totalItems"] == 3 and first["sortInfo"]["field"] == "date"
    token = first["syncToken"]
    assert token == api.get("/api/v1/mails", folderId=inbox, syncTokenOnly="true")["syncToken"]
    label = mb.create_label("L")
    mb.add_label_to_mail(a, label)
    mb.replace_mail(b, raw_message("edited"))
    moved = mb.move_mail(c, mb.folder_id("Sent"))
    d = mb.add_mail(inbox, raw_message("d"))
    reply = _delta(api, inbox, token)
    (updated,) = reply["updatedItems"]
    assert set(updated) == UPDATED_KEYS and updated["id"] == a and updated["labelIds"] == [label]
    assert [m["subject"] for m in reply["replacedItems"]] == ["edited"]
    assert reply["removedItems"] == [{"id": c, "folderId": inbox}]
    assert [m["id"] for m in reply["newItems"]] == [d]
    sent = _delta(api, mb.folder_id("Sent"))
    assert [m["id"] for m in sent["newItems"]] == [moved]
    assert _delta(api, inbox, reply["syncToken"])["updatedItems"] == []


def test_limit_gives_intermediate_tokens(api: Api, inbox: str) -> None:
    ids = add_mails(api.fake.mailbox, inbox, 7)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        reply = _delta(api, inbox, token, limit=3)
        seen += [m["id"] for m in reply["newItems"]]
        token, pages = reply["syncToken"], pages + 1
        if not reply["moreAvailable"]:
            break
    assert seen == ids and pages == 3
    assert token == api.fake.mailbox.content_token(inbox)
    api.fake.knobs.max_page_size = 2
    assert len(_delta(api, inbox, None, limit=100)["newItems"]) == 2  # clamped like listings


def test_rejected_tokens_are_400(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    add_mails(mb, inbox, 2)
    token = _delta(api, inbox)["syncToken"]
    for bad in ("garbage", mb.content_token(mb.folder_id("Sent"))):
        assert api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": inbox, "syncToken": bad})
    mb.reset_id_validity(inbox)
    api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": inbox, "syncToken": token})
    token = _delta(api, inbox)["syncToken"]
    mb.expire_tokens()
    api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": inbox, "syncToken": token})
    token = _delta(api, inbox)["syncToken"]
    api.fake.knobs.delta_retention = 1
    for mail in mb.mails(inbox):
        mb.set_flags(mail.id, flagged=True)
    api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": inbox, "syncToken": token})
    api.error("GET", "/api/v1/mails/delta", 400, params={})
    api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": "80_999"})
    api.error("GET", "/api/v1/mails/delta", 400, params={"folderId": inbox, "limit": "0"})


def test_no_conversation_id_outside_conversations(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    spam = mb.folder_id("Spam")
    mb.add_mail(spam, raw_message())
    assert "conversationId" not in _delta(api, spam)["newItems"][0]
    mb.add_mail(inbox, raw_message())
    api.fake.knobs.conversation_index = "unavailable"
    assert "conversationId" not in _delta(api, inbox)["newItems"][0]
