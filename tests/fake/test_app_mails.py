"""Over HTTP: mail listing, sorting, MailInstance, source, single-mail operations, create."""

from __future__ import annotations

import email
from email import policy

import pytest

from .conftest import USER, Api, add_mails, raw_message

MAIL_FIELDS = {
    "id", "folderId", "size", "from", "to", "cc", "bcc", "replyTo", "replyToAll", "sender",
    "messageId", "subject", "snippet", "date", "isUnread", "isFlagged", "isDraft", "refwFlags",
    "isDeleted", "hasAttachments", "isItip", "returnReceipt", "importance", "attachments",
    "labelIds", "bimiLocation",
}


def _ids(reply: dict[str, list[dict[str, str]]]) -> list[str]:
    return [m["id"] for m in reply["items"]]


def test_list_default_page_size_and_paging(api: Api, inbox: str) -> None:
    ids = add_mails(api.fake.mailbox, inbox, 45)
    reply = api.get("/api/v1/mails", folderId=inbox)
    assert reply["totalItems"] == 45 and _ids(reply) == ids[::-1][:20]
    assert reply["sortInfo"] == {"field": "date", "direction": "DESC", "activeRowIndex": -1}
    assert reply["syncToken"] == api.fake.mailbox.content_token(inbox)
    assert _ids(api.get("/api/v1/mails", folderId=inbox, start=40)) == ids[4::-1]
    api.fake.knobs.default_page_size = 7
    assert len(api.get("/api/v1/mails", folderId=inbox)["items"]) == 7
    assert api.get("/api/v1/mails", folderId=inbox, syncTokenOnly="true") == {"syncToken": reply["syncToken"]}


def test_limit_is_clamped_silently(api: Api, inbox: str) -> None:
    add_mails(api.fake.mailbox, inbox, 1005)
    assert len(api.get("/api/v1/mails", folderId=inbox, limit=5000)["items"]) == 1000
    api.fake.knobs.max_page_size = 10
    assert len(api.get("/api/v1/mails", folderId=inbox, limit=50)["items"]) == 10


def test_sort_and_dir_are_sticky_per_session(api: Api, inbox: str) -> None:
    ids = add_mails(api.fake.mailbox, inbox, 3)
    assert _ids(api.get("/api/v1/mails", folderId=inbox, sort="date", dir="ASC")) == ids
    reply = api.get("/api/v1/mails", folderId=inbox)
    assert _ids(reply) == ids and reply["sortInfo"]["direction"] == "ASC"
    other = Api(api.fake)
    other.login()
    assert _ids(other.get("/api/v1/mails", folderId=inbox)) == ids[::-1]  # a new session: date/DESC
    other.close()
    api.fake.knobs.sticky_sort = False
    assert _ids(api.get("/api/v1/mails", folderId=inbox)) == ids[::-1]


def test_sort_fields_and_active_row(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    big = mb.add_mail(inbox, raw_message("b subject", body="x" * 500), date=1)
    flagged = mb.add_mail(inbox, raw_message("Re: a subject"), date=2, flagged=True)
    read = mb.add_mail(inbox, raw_message("c subject"), date=3, unread=False)
    assert _ids(api.get("/api/v1/mails", folderId=inbox, sort="subject", dir="ASC")) == [flagged, big, read]
    assert _ids(api.get("/api/v1/mails", folderId=inbox, sort="size", dir="DESC"))[0] == big
    assert _ids(api.get("/api/v1/mails", folderId=inbox, sort="isFlagged", dir="DESC"))[0] == flagged
    assert _ids(api.get("/api/v1/mails", folderId=inbox, sort="isUnread", dir="ASC"))[0] == read
    reply = api.get("/api/v1/mails", folderId=inbox, sort="date", dir="ASC", activeMailId=read)
    assert reply["sortInfo"]["activeRowIndex"] == 2
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "sort": "folderName"})
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "sort": "colour"})
    api.error("GET", "/api/v1/mails", 400, params={"folderId": inbox, "dir": "UP"})
    api.error("GET", "/api/v1/mails", 400, params={})
    api.error("GET", "/api/v1/mails", 400, params={"folderId": "80_999"})


def test_mail_instance(api: Api, inbox: str) -> None:
    label = api.fake.mailbox.create_label("L")
    raw = raw_message(
        "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", message_id="x1@test", headers=("Cc: carol@x", "Importance: low")
    )
    mail = api.fake.mailbox.add_mail(inbox, raw, date=1_744_407_421, refw="re", labels=[label])
    got = api.get(f"/api/v1/mails/{mail}")
    assert set(got) == MAIL_FIELDS
    assert got["date"] == "1744407421" and got["size"] == len(raw)
    assert got["subject"] == "Grüße" and got["messageId"] == "<x1@test>"
    assert got["replyToAll"] == f"{USER}, carol@x" and got["replyTo"] == got["from"]
    assert (got["isUnread"], got["refwFlags"], got["importance"], got["labelIds"]) == (True, "re", "low", [label])
    assert got["snippet"] == "Hello there"
    api.fake.knobs.api_version = "10.4"
    assert "bimiLocation" not in api.get(f"/api/v1/mails/{mail}")
    api.error("GET", "/api/v1/mails/nope", 404)


def test_source_is_exact(api: Api, inbox: str) -> None:
    raw = b"Subject: bytes\n\nbare LF\r\nCRLF \x00 NUL \xff\xfe not utf-8\r"
    mail = api.fake.mailbox.add_mail(inbox, raw)
    reply = api.request("GET", f"/api/v1/mails/{mail}/source")
    assert reply.content == raw
    assert reply.headers["content-type"] == "message/rfc822"
    assert reply.headers["content-length"] == str(len(raw))
    download = api.request("GET", f"/api/v1/mails/{mail}/source/download")
    assert download.content == raw and download.headers["content-disposition"].startswith("attachment")
    assert api.request("GET", f"/api/v1/mails/{mail}/source/headers").content == b"Subject: bytes\n\n"
    assert api.get(f"/api/v1/mails/{mail}/attachments") == {"items": []}
    api.error("GET", "/api/v1/mails/nope/source", 404)


def test_update_move_copy_delete(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    sent, trash = mb.folder_id("Sent"), mb.folder_id("Trash")
    mail = add_mails(mb, inbox, 1)[0]
    got = api.call("PATCH", f"/api/v1/mails/{mail}", json={"isUnread": False, "isFlagged": True})
    assert (got["isUnread"], got["isFlagged"]) == (False, True)
    api.error("PATCH", f"/api/v1/mails/{mail}", 400, json={})
    api.error("PATCH", f"/api/v1/mails/{mail}", 400, json={"isUnread": "no"})
    api.error("PATCH", f"/api/v1/mails/{mail}", 400, json={"isDraft": True})
    moved = api.call("POST", f"/api/v1/mails/{mail}/move", json={"destinationFolderId": sent})
    assert moved["id"] != mail and moved["folderId"] == sent and moved["isFlagged"]
    api.error("GET", f"/api/v1/mails/{mail}", 404)
    api.error("POST", f"/api/v1/mails/{moved['id']}/move", 400, json={"destinationFolderId": "80_999"})
    api.error("POST", f"/api/v1/mails/{moved['id']}/move", 400, json={})
    api.error("POST", "/api/v1/mails/nope/move", 404, json={"destinationFolderId": sent})
    copy = api.call("POST", f"/api/v1/mails/{moved['id']}/copy", json={"destinationFolderId": inbox})
    assert copy["folderId"] == inbox and copy["size"] == moved["size"]
    assert api.call("DELETE", f"/api/v1/mails/{copy['id']}") is None
    in_trash = [m.id for m in mb.mails(trash)]
    assert len(in_trash) == 1 and in_trash[0] != copy["id"]
    api.call("DELETE", f"/api/v1/mails/{in_trash[0]}")
    assert mb.mails(trash) == []
    api.fake.knobs.ids_change_on_move = False
    kept = api.call("POST", f"/api/v1/mails/{moved['id']}/move", json={"destinationFolderId": inbox})
    assert kept["id"] == moved["id"] and kept["folderId"] == inbox


def test_mail_labels(api: Api, inbox: str) -> None:
    label = api.call("POST", "/api/v1/labels", json={"name": "L"})["id"]
    mail = add_mails(api.fake.mailbox, inbox, 1)[0]
    assert api.call("POST", f"/api/v1/mails/{mail}/labels", json={"labelId": label}) is None
    assert api.get(f"/api/v1/mails/{mail}")["labelIds"] == [label]
    api.error("POST", f"/api/v1/mails/{mail}/labels", 400, json={"labelId": "80_999"})
    api.error("POST", f"/api/v1/mails/{mail}/labels", 400, json={})
    api.error("POST", "/api/v1/mails/nope/labels", 404, json={"labelId": label})
    assert api.call("DELETE", f"/api/v1/mails/{mail}/labels/{label}") is None
    assert api.get(f"/api/v1/mails/{mail}")["labelIds"] == []
    api.error("DELETE", f"/api/v1/mails/{mail}/labels/80_999", 404)


def test_create_mail(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    draft = api.call("POST", "/api/v1/mails", json={"to": "bob@x", "subject": "Hi", "bodyText": "Yo"})
    assert draft["folderId"] == mb.folder_id("Drafts") and draft["isDraft"] and draft["refwType"] == ""
    assert draft["from"] == USER and draft["snippet"] == "Yo"
    original = mb.add_mail(inbox, raw_message("Topic", message_id="orig@x", headers=("References: <root@x>",)))
    reply = api.call(
        "POST",
        "/api/v1/mails",
        json={"folderId": inbox, "refwType": "re", "refwMailId": original, "subject": "Re: Topic",
              "bodyHtml": "<b>ok</b>", "isUnread": True, "isFlagged": True, "importance": "high"},
    )
    assert (reply["folderId"], reply["isDraft"], reply["isUnread"], reply["isFlagged"]) == (inbox, False, True, True)
    assert reply["importance"] == "high" and "refwType" not in reply
    msg = email.message_from_bytes(mb.get_mail(reply["id"]).raw, policy=policy.default)
    assert msg["In-Reply-To"] == "<orig@x>" and msg["References"] == "<root@x> <orig@x>"
    assert msg.get_content_type() == "text/html" and msg["Message-ID"]
    assert mb.get_mail(reply["id"]).conversation_id == mb.get_mail(original).conversation_id
    fw = api.call("POST", "/api/v1/mails", json={"refwType": "fw", "refwMailId": original})
    assert (fw["refwType"], fw["refwMailId"]) == ("fw", original)
    for bad in (
        {"refwType": "refw", "refwMailId": original},
        {"refwType": "re"},
        {"refwMailId": original},
        {"refwType": "re", "refwMailId": "nope"},
        {"importance": "urgent"},
        {"folderId": "80_999"},
        {"subject": "bad\r\nBcc: x@y"},
        {"temporaryAttachments": [{"id": 1}]},
        {"date": "1"},
    ):
        api.error("POST", "/api/v1/mails", 400, json=bad)


def test_spam_markers_follow_the_version(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    mail = add_mails(mb, inbox, 1)[0]
    spam = api.call("POST", f"/api/v1/mails/{mail}/spam")
    assert spam["folderId"] == mb.folder_id("Spam")
    back = api.call("POST", f"/api/v1/mails/{spam['id']}/notspam")
    assert back["folderId"] == inbox
    api.fake.knobs.api_version = "10.4"
    api.error("POST", f"/api/v1/mails/{back['id']}/spam", 404)


@pytest.mark.parametrize("generation", ["10.4", "10.6"])
def test_delta_exists_from_10_6(api: Api, inbox: str, generation: str) -> None:
    api.fake.knobs.api_version = generation
    reply = api.request("GET", "/api/v1/mails/delta", params={"folderId": inbox})
    assert reply.status_code == (200 if generation == "10.6" else 404)
    assert api.fake.counters["GET /api/v1/mails/delta"] == 1


def test_attachments_are_listed(api: Api, inbox: str) -> None:
    raw = (
        b'Subject: with file\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    )
    mail = api.fake.mailbox.add_mail(inbox, raw)
    got = api.get(f"/api/v1/mails/{mail}")
    assert got["hasAttachments"] is True and got["snippet"] == "see attached"
    assert got["attachments"] == [
        {"id": 3, "mailId": mail, "name": "r.pdf", "contentId": "", "contentType": "application/pdf",
         "size": 9, "isInline": False}
    ]
    assert api.get(f"/api/v1/mails/{mail}/attachments") == {"items": got["attachments"]}
