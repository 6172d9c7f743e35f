"""Over HTTP: conversations (threading by Message-ID / In-Reply-To / References)."""

from __future__ import annotations

import pytest

from axsync.fake.mailbox import Mailbox

from .conftest import USER, Api, raw_message

CONV_FIELDS = {
    "id", "subject", "snippet", "date", "isUnread", "isFlagged", "refwFlags", "hasAttachments",
    "importance", "labelIds", "attachments", "participants", "myRecipients", "hasDrafts",
    "mailCount", "mails",
}


def _thread(mb: Mailbox) -> dict[str, str]:
    """A thread over INBOX, Sent and Trash, plus an unrelated mail and a spam mail."""
    inbox, sent = mb.folder_id("INBOX"), mb.folder_id("Sent")
    ids = {
        "root": mb.add_mail(inbox, raw_message("Plan", message_id="p1@x"), date=10),
        "mine": mb.add_mail(
            sent,
            raw_message("Re: Plan", message_id="p2@x", in_reply_to="p1@x", sender=USER, to="Bob <bob@example.org>"),
            date=20,
            unread=False,
            refw="re",
        ),
        "late": mb.add_mail(inbox, raw_message("Re: Plan", message_id="p3@x", references=("p1@x", "p2@x")), date=30),
        "other": mb.add_mail(inbox, raw_message("Other", message_id="o1@x"), date=40),
        "spam": mb.add_mail(mb.folder_id("Spam"), raw_message("Re: Plan", in_reply_to="p1@x"), date=50),
    }
    ids["trash"] = mb.add_mail(mb.folder_id("Trash"), raw_message("Re: Plan", in_reply_to="p1@x"), date=60)
    return ids


def test_list_and_instance(api: Api, inbox: str) -> None:
    ids = _thread(api.fake.mailbox)
    reply = api.get("/api/v1/conversations", folderId=inbox)
    assert set(reply) == {"syncToken", "totalItems", "sortInfo", "items"} and reply["totalItems"] == 2
    other, plan = reply["items"]  # newest first
    assert set(plan) == CONV_FIELDS
    assert [m["mailId"] for m in plan["mails"]] == [ids["root"], ids["mine"], ids["late"]]  # no Spam/Trash
    assert plan["mailCount"] == "3" and plan["subject"] == "Plan" and plan["date"] == "30"
    assert plan["refwFlags"] == "re" and plan["isUnread"] is True
    assert {p["fullEmailAddress"] for p in plan["participants"]} == {"Bob <bob@example.org>", USER}
    assert [r["fullEmailAddress"] for r in plan["myRecipients"]] == ["Bob <bob@example.org>"]
    assert plan["mails"][0]["normalizedMessageId"] == "p1@x"
    assert other["mailCount"] == "1"
    sent = api.get("/api/v1/conversations", folderId=api.fake.mailbox.folder_id("Sent"))
    assert sent["totalItems"] == 1 and sent["items"][0]["id"] == plan["id"] and sent["items"][0]["date"] == "20"
    paged = api.get("/api/v1/conversations", folderId=inbox, limit=1, start=1, activeConversationId=plan["id"])
    assert [c["id"] for c in paged["items"]] == [plan["id"]] and paged["sortInfo"]["activeRowIndex"] == 1
    assert api.get("/api/v1/conversations", folderId=inbox, syncTokenOnly="true") == {"syncToken": reply["syncToken"]}
    api.error("GET", "/api/v1/conversations", 400, params={"folderId": api.fake.mailbox.folder_id("Trash")})
    api.error("GET", "/api/v1/conversations", 400, params={"folderId": inbox, "sort": "size"})


def test_list_token_changes_with_any_member(api: Api, inbox: str) -> None:
    ids = _thread(api.fake.mailbox)
    token = api.get("/api/v1/conversations", folderId=inbox, syncTokenOnly="true")["syncToken"]
    api.fake.mailbox.set_flags(ids["mine"], flagged=True)  # a member in Sent
    assert api.get("/api/v1/conversations", folderId=inbox, syncTokenOnly="true")["syncToken"] != token


def test_get_one_and_from_mail(api: Api, inbox: str) -> None:
    ids = _thread(api.fake.mailbox)
    conv = api.get(f"/api/v1/mails/{ids['late']}/conversation")
    assert set(conv) == CONV_FIELDS
    one = api.get(f"/api/v1/conversations/{conv['id']}")
    assert set(one) == {"syncToken", "totalItems", "items"} and one["totalItems"] == 3
    assert [m["id"] for m in one["items"]] == [ids["root"], ids["mine"], ids["late"]]
    assert api.get(f"/api/v1/conversations/{conv['id']}", syncTokenOnly="true") == {"syncToken": one["syncToken"]}
    assert [m["id"] for m in api.get(f"/api/v1/conversations/{conv['id']}", start=1, limit=1)["items"]] == [ids["mine"]]
    picked = api.call("GET", f"/api/v1/conversations/{conv['id']}", params=[("mailIds", ids["late"])])
    assert [m["id"] for m in picked["items"]] == [ids["late"]]
    api.fake.mailbox.set_flags(ids["root"], unread=False)
    assert api.get(f"/api/v1/conversations/{conv['id']}")["syncToken"] != one["syncToken"]
    api.error("GET", f"/api/v1/mails/{ids['spam']}/conversation", 404)
    api.error("GET", "/api/v1/conversations/bm9wZQ", 404)


def test_update_move_delete_labels(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    ids = _thread(mb)
    conv = mb.conversation_of_mail(ids["root"])
    reply = api.call("PATCH", f"/api/v1/conversations/{conv}", json={"isUnread": False, "isFlagged": True})
    assert reply["isFlagged"] is True and reply["id"] == conv
    mb.set_flags(ids["mine"], unread=True)
    api.call("PATCH", f"/api/v1/conversations/{conv}", json={"isUnread": False})
    assert mb.get_mail(ids["mine"]).unread is True  # Sent members keep their isUnread
    api.error("PATCH", f"/api/v1/conversations/{conv}", 400, json={})
    label = mb.create_label("L")
    assert api.call("POST", f"/api/v1/conversations/{conv}/labels", json={"labelId": label}) is None
    assert all(label in mb.get_mail(i).label_ids for i in mb.conversations()[conv])
    api.call("DELETE", f"/api/v1/conversations/{conv}/labels/{label}")
    assert all(not mb.get_mail(i).label_ids for i in mb.conversations()[conv])
    api.error("DELETE", f"/api/v1/conversations/{conv}/labels/80_999", 404)
    archive = mb.add_folder("Archive")
    moved = api.call("POST", f"/api/v1/conversations/{conv}/move", json={"destinationFolderId": archive})
    assert {m["folderId"] for m in moved["mails"]} == {archive, mb.folder_id("Sent")}
    assert api.call("POST", f"/api/v1/conversations/{conv}/move", json={"destinationFolderId": mb.folder_id("Spam")}) is None
    assert [mb.get_mail(i).folder_id for i in mb.conversations()[conv]] == [mb.folder_id("Sent")]
    assert api.call("DELETE", f"/api/v1/conversations/{conv}") is None
    api.error("DELETE", f"/api/v1/conversations/{conv}", 404)


def test_spam_marker_and_unavailable_index(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    ids = _thread(mb)
    conv = mb.conversation_of_mail(ids["other"])
    assert api.call("POST", f"/api/v1/conversations/{conv}/spam") is None
    assert conv not in mb.conversations()
    api.fake.knobs.conversation_index = "unavailable"
    for method, path in (
        ("GET", f"/api/v1/conversations?folderId={inbox}"),
        ("GET", f"/api/v1/mails/{ids['root']}/conversation"),
        ("GET", f"/api/v1/conversations/{mb.conversation_of_mail(ids['root'])}"),
    ):
        api.error(method, path, 400)
    api.error("POST", "/api/v1/batch/conversations/delete", 400, json={"ids": ["x"]})


@pytest.mark.parametrize("generation", ["10.4", "10.6"])
def test_conversation_spam_needs_10_5_27(api: Api, generation: str) -> None:
    ids = _thread(api.fake.mailbox)
    api.fake.knobs.api_version = generation
    conv = api.fake.mailbox.conversation_of_mail(ids["other"])
    status = 200 if generation == "10.6" else 404
    assert api.request("POST", f"/api/v1/conversations/{conv}/spam").status_code == status
