"""Over HTTP: folders (list, CRUD, delta) and labels."""

from __future__ import annotations

from .conftest import Api, add_mails, raw_message

FOLDER_FIELDS = {
    "id", "name", "parentId", "role", "ownerUsername", "ownerFullname", "folderSize", "folderType",
    "accessMode", "totalItems", "unreadItems", "permissions",
}


def test_list_folders(api: Api, inbox: str) -> None:
    add_mails(api.fake.mailbox, inbox, 2)
    reply = api.get("/api/v1/folders/")
    assert api.get("/api/v1/folders") == reply
    assert set(reply) == {"syncToken", "items"}
    items = {f["name"]: f for f in reply["items"]}
    assert set(items) == {"INBOX", "Drafts", "Sent", "Trash", "Spam"}
    assert all(set(f) == FOLDER_FIELDS for f in items.values())
    assert items["INBOX"]["totalItems"] == 2 and items["INBOX"]["unreadItems"] == 2
    assert items["Spam"]["role"] == "junk" and "x" not in items["Spam"]["permissions"]
    assert api.get("/api/v1/folders/", syncTokenOnly="true") == {"syncToken": reply["syncToken"]}
    assert api.get("/api/v1/folders/", type="contacts")["items"] == []
    assert api.get("/api/v1/folders/", accessMode="shared")["items"] == []
    assert len(api.get("/api/v1/folders/", type="mails", accessMode="local")["items"]) == 5
    api.error("GET", "/api/v1/folders/", 400, params={"type": "public_container"})
    api.error("GET", "/api/v1/folders/", 400, params={"accessMode": "nobody"})


def test_folder_list_token_follows_changes(api: Api, inbox: str) -> None:
    token = api.get("/api/v1/folders/", syncTokenOnly="true")["syncToken"]
    assert api.get("/api/v1/folders/", syncTokenOnly="true")["syncToken"] == token
    api.fake.mailbox.add_mail(inbox, raw_message())
    assert api.get("/api/v1/folders/", syncTokenOnly="true")["syncToken"] != token


def test_folder_crud(api: Api) -> None:
    mb = api.fake.mailbox
    created = api.call("POST", "/api/v1/folders/", json={"name": "Work"})
    assert set(created) == FOLDER_FIELDS and created["parentId"] == mb.container_id
    kid = api.call("POST", "/api/v1/folders", json={"name": "Kid/1", "parentId": created["id"]})
    assert mb.folder_path(kid["id"]) == ("Work", "Kid/1")
    renamed = api.call("PATCH", f"/api/v1/folders/{kid['id']}", json={"name": "Kid 2"})
    assert renamed["name"] == "Kid 2"
    moved = api.call("POST", f"/api/v1/folders/{kid['id']}/move", json={"parentId": mb.container_id})
    assert moved["parentId"] == mb.container_id
    assert api.call("DELETE", f"/api/v1/folders/{kid['id']}") is None
    assert mb.folder_path(kid["id"]) == ("Trash", "Kid 2")
    api.call("DELETE", f"/api/v1/folders/{kid['id']}")
    api.error("DELETE", f"/api/v1/folders/{kid['id']}", 404)


def test_folder_errors(api: Api, inbox: str) -> None:
    work = api.call("POST", "/api/v1/folders/", json={"name": "Work"})["id"]
    api.error("POST", "/api/v1/folders/", 400, json={"name": "Work"})
    api.error("POST", "/api/v1/folders/", 400, json={})
    api.error("POST", "/api/v1/folders/", 400, json={"name": "x" * 300})
    api.error("POST", "/api/v1/folders/", 400, json={"name": "Cal", "type": "events", "parentId": work})
    api.error("POST", "/api/v1/folders/", 400, json={"name": "Lost", "parentId": "80_999"})
    assert api.call("POST", "/api/v1/folders/", json={"name": "Cal", "type": "events"})["folderType"] == "events"
    assert api.error("PATCH", f"/api/v1/folders/{inbox}", 403, json={"name": "x"}) == "OPERATION_NOT_PERMITTED"
    api.error("DELETE", f"/api/v1/folders/{inbox}", 403)
    api.error("POST", f"/api/v1/folders/{inbox}/move", 403, json={"parentId": work})
    api.error("POST", f"/api/v1/folders/{work}/move", 400, json={"parentId": "80_999"})
    api.error("POST", f"/api/v1/folders/{work}/move", 400, json={})
    api.error("POST", "/api/v1/folders/80_999/move", 404, json={"parentId": inbox})
    api.error("PATCH", "/api/v1/folders/80_999", 404, json={"name": "x"})


def test_folders_delta(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    first = api.get("/api/v1/folders/delta")
    assert [e["eventType"] for e in first["events"]] == ["newFolder"] * 5
    event = first["events"][0]
    assert event["containerId"] == mb.container_id and event["pathChanged"] is False
    assert {"idValidity", "syncToken", "name", "parentId", "role", "permissions"} <= set(event)
    token = first["syncToken"]
    assert api.get("/api/v1/folders/delta", syncToken=token) == {"syncToken": token, "events": []}
    work = mb.add_folder("Work")
    mb.add_mail(inbox, raw_message())
    reply = api.get("/api/v1/folders/delta", syncToken=token)
    new, changed = reply["events"]
    assert (new["eventType"], new["id"], new["name"]) == ("newFolder", work, "Work")
    assert (changed["eventType"], changed["id"], changed["pathChanged"]) == ("changedFolder", inbox, False)
    assert changed["syncToken"] == api.get("/api/v1/mails", folderId=inbox, syncTokenOnly="true")["syncToken"]
    assert {"folderSize", "totalItems", "unreadItems", "idValidity"} <= set(changed)
    assert "name" not in changed
    token = reply["syncToken"]
    mb.move_folder(work, inbox)
    moved = api.get("/api/v1/folders/delta", syncToken=token)["events"][0]
    assert moved["pathChanged"] is True and moved["oldParentId"] == mb.container_id
    assert moved["parentId"] == inbox and moved["name"] == "Work"
    mb.delete_folder(work)
    mb.delete_folder(work)
    events = api.get("/api/v1/folders/delta", syncToken=token)["events"]
    assert {"eventType": "removedFolder", "id": work, "containerId": mb.container_id} in events
    assert api.get("/api/v1/folders/delta", accessMode="public")["events"] == []


def test_folders_delta_token_rejections_and_10_4(api: Api, inbox: str) -> None:
    mb = api.fake.mailbox
    token = api.get("/api/v1/folders/delta")["syncToken"]
    api.error("GET", "/api/v1/folders/delta", 400, params={"syncToken": "garbage"})
    api.fake.knobs.delta_retention = 2
    add_mails(mb, inbox, 3)
    api.error("GET", "/api/v1/folders/delta", 400, params={"syncToken": token})
    api.fake.knobs.delta_retention = None
    token = api.get("/api/v1/folders/delta", syncToken=token)["syncToken"]
    mb.expire_tokens()
    api.error("GET", "/api/v1/folders/delta", 400, params={"syncToken": token})
    api.fake.knobs.api_version = "10.4"
    assert api.error("GET", "/api/v1/folders/delta", 404) == "NOT_FOUND"
    assert api.fake.counters["GET /api/v1/folders/delta"] == 6


def test_labels(api: Api, inbox: str) -> None:
    empty = api.get("/api/v1/labels")
    assert empty["items"] == [] and api.get("/api/v1/labels/") == empty
    label = api.call("POST", "/api/v1/labels", json={"name": "Work"})
    assert set(label) == {"id", "name"} and label["name"] == "Work"
    assert api.get(f"/api/v1/labels/{label['id']}") == label
    listed = api.get("/api/v1/labels")
    assert listed["items"] == [label] and listed["syncToken"] != empty["syncToken"]
    assert api.get("/api/v1/labels", syncTokenOnly="true") == {"syncToken": listed["syncToken"]}
    for bad in ("work", "Junk", "notjunk", "NonJunk", "x" * 129, ""):
        api.error("POST", "/api/v1/labels", 400, json={"name": bad})
    api.error("POST", "/api/v1/labels", 400, json={"name": 5})
    renamed = api.call("PATCH", f"/api/v1/labels/{label['id']}", json={"name": "Job"})
    assert renamed == {"id": label["id"], "name": "Job"}
    mail = api.fake.mailbox.add_mail(inbox, raw_message(), labels=[label["id"]])
    assert api.call("DELETE", f"/api/v1/labels/{label['id']}") is None
    assert api.fake.mailbox.get_mail(mail).label_ids == ()
    api.error("GET", f"/api/v1/labels/{label['id']}", 404)
    api.error("PATCH", f"/api/v1/labels/{label['id']}", 404, json={"name": "x"})
    api.error("DELETE", f"/api/v1/labels/{label['id']}", 404)
