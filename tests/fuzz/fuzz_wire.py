"""Fuzz the parsing of API replies (``axsync.api.jsonread`` + ``axsync.api.wire``).

Property: whatever the body, a parser returns a model object or raises
:class:`axsync.errors.MalformedReply`; never any other exception. ``error_text`` never
raises and ``parse_retry_after`` gives None or a finite number >= 0.

Inputs are, by the first byte: raw bytes as a body; a valid reply of some endpoint with
values replaced, removed or added at random places (wrong types, huge numbers, odd
strings), sent through JSON; or such a reply serialised and then corrupted byte-wise.

    python tests/fuzz/fuzz_wire.py -runs=200000 [-seed=N] [CORPUS_DIR]
"""

from __future__ import annotations

import copy
import json
import math
import sys
from typing import Any

import atheris
import fuzzlib

with atheris.instrument_imports(include=["axsync"]):
    from axsync.api import jsonread, wire
    from axsync.api.retry import parse_retry_after
    from axsync.errors import MalformedReply

W = "GET /fuzz"
MAIL = {
    "id": "ODBfMTE0XzEzNTY", "folderId": "80_114", "size": 2048, "date": "1744407421",
    "isUnread": False, "isFlagged": True, "isDraft": False, "isDeleted": False,
    "refwFlags": "re", "labelIds": ["40_71"], "messageId": "<a@b>", "subject": "Hello",
    "from": "A <a@b>", "hasAttachments": True, "conversationId": "c1",
}
FOLDER = {
    "id": "80_114", "name": "Inbox", "parentId": "80_1", "role": "inbox", "folderType": "mails",
    "accessMode": "local", "totalItems": 3, "unreadItems": 1, "folderSize": 9000,
    "idValidity": "5", "syncToken": "t1",
}
CONVERSATION = {
    "id": "c1", "subject": "Hello", "date": "1744407421", "mailCount": "2", "syncToken": "ct",
    "mails": [{"mailId": "m1", "folderId": "80_114"}, {"mailId": "m2", "folderId": "80_2"}],
}
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("sessid", {"sessid": "abc"}),
    ("server", {"apiVersion": "1.2.0", "serverVersion": "10.6.20"}),
    ("account", {"accountName": "alice", "domainName": "example.com", "folderContainerId": "80_1",
                 "quota": {"total": 10, "used": 1}}),
    ("index", {"items": [{"name": "conversation", "state": "uptodate"}]}),
    ("token", {"syncToken": "t1"}),
    ("folder", FOLDER),
    ("folders", {"syncToken": "t", "items": [FOLDER, {**FOLDER, "id": "80_2", "name": "Sub"}]}),
    ("folder_delta", {"syncToken": "t", "moreAvailable": False, "events": [
        {"eventType": "newFolder", **FOLDER, "containerId": "80_1", "pathChanged": False},
        {"eventType": "changedFolder", "id": "80_2", "syncToken": "x", "pathChanged": True,
         "oldParentId": "80_1", "name": "n", "parentId": "80_114"},
        {"eventType": "removedFolder", "id": "80_3"}]}),
    ("mail", MAIL),
    ("mails", {"syncToken": "t", "totalItems": 2, "items": [MAIL, {**MAIL, "id": "x2"}]}),
    ("mail_delta", {"syncToken": "t", "moreAvailable": True, "newItems": [MAIL],
                    "replacedItems": [MAIL], "removedItems": [{"id": "x", "folderId": "80_114"}],
                    "updatedItems": [{"id": "y", "folderId": "80_114", "isUnread": True,
                                      "labelIds": ["40_1"], "conversationId": "c"}]}),
    ("label", {"id": "40_1", "name": "Work"}),
    ("labels", {"syncToken": "t", "items": [{"id": "40_1", "name": "Work"}]}),
    ("conversation", CONVERSATION),
    ("conversations", {"syncToken": "t", "totalItems": 1, "items": [CONVERSATION]}),
    ("conversation_mails", {"syncToken": "t", "totalItems": 1, "items": [MAIL]}),
    ("batch", {"batchOperationDetails": {"failedItems": ["a"]}, "jobKey": "j", "status": "inProgress",
               "progress": 0}),
]
PARSERS: dict[str, Any] = {
    "sessid": lambda d: wire.parse_sessid(d, W),
    "server": lambda d: wire.parse_server_info(d, W),
    "account": lambda d: wire.parse_account_info(d, W),
    "index": lambda d: wire.parse_index_info(d, W),
    "token": lambda d: wire.parse_sync_token(d, W),
    "folder": lambda d: wire.parse_folder(d, W),
    "folders": lambda d: wire.parse_folder_list(d, W),
    "folder_delta": lambda d: wire.parse_folder_delta(d, W),
    "mail": lambda d: wire.parse_mail(d, W),
    "mails": lambda d: wire.parse_mail_page(d, W, "80_114"),
    "mail_delta": lambda d: wire.parse_mail_delta(d, W, "80_114"),
    "label": lambda d: wire.parse_label(d, W),
    "labels": lambda d: wire.parse_label_list(d, W),
    "conversation": lambda d: wire.parse_conversation(d, W),
    "conversations": lambda d: wire.parse_conversation_page(d, W),
    "conversation_members": lambda d: wire.parse_conversation_members(d, W),
    "conversation_mails": lambda d: wire.parse_conversation_mails(d, W),
    "batch": lambda d: wire.parse_batch(d, W, 201, ("a", "b")),
}
NAMES = sorted(PARSERS)


def _containers(value: object, out: list[object]) -> list[object]:
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            _containers(v, out)
    elif isinstance(value, list):
        out.append(value)
        for v in value:
            _containers(v, out)
    return out


def mutate(fdp: atheris.FuzzedDataProvider, data: dict[str, Any]) -> dict[str, Any]:
    """Replace, remove or add values at random places of a copy of ``data``."""
    data = copy.deepcopy(data)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        places = _containers(data, [])
        place = places[fdp.ConsumeIntInRange(0, len(places) - 1)]
        action = fdp.ConsumeIntInRange(0, 2)
        if isinstance(place, dict):
            keys = sorted(place)
            key = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)] if keys and action < 2 else fuzzlib.text(fdp, 12)
            if action == 1 and key in place:
                del place[key]
            else:
                place[key] = fuzzlib.json_value(fdp)
        elif isinstance(place, list):
            if place and action < 2:
                i = fdp.ConsumeIntInRange(0, len(place) - 1)
                if action == 1:
                    del place[i]
                else:
                    place[i] = fuzzlib.json_value(fdp)
            else:
                place.append(fuzzlib.json_value(fdp))
    return data


def check_parse(name: str, body: bytes) -> None:
    try:
        data = jsonread.decode_json(body, W) if body.strip() else None
    except MalformedReply:
        return
    try:
        PARSERS[name](data)
    except MalformedReply:
        pass


def TestOneInput(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    mode = fdp.ConsumeIntInRange(0, 3)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    if mode == 0:  # raw bytes
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
        check_parse(name, body)
        assert isinstance(jsonread.error_text(body), str)
        return
    template = dict(TEMPLATES).get(name, CONVERSATION)
    if fdp.ConsumeBool():  # sometimes another endpoint's reply
        template = TEMPLATES[fdp.ConsumeIntInRange(0, len(TEMPLATES) - 1)][1]
    data = mutate(fdp, template)
    body = json.dumps(data, ensure_ascii=fdp.ConsumeBool()).encode("utf-8", "surrogatepass")
    if mode == 2:  # corrupt the serialised reply
        buf = bytearray(body)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            if buf:
                buf[fdp.ConsumeIntInRange(0, len(buf) - 1)] = fdp.ConsumeIntInRange(0, 255)
        body = bytes(buf)
    elif mode == 3:  # cut short (a dropped connection)
        body = body[:fdp.ConsumeIntInRange(0, len(body))]
    check_parse(name, body)
    if fdp.ConsumeBool():
        try:  # the value itself, not through JSON: parsers see only decoded JSON, but must not care
            PARSERS[name](data)
        except MalformedReply:
            pass
    hint = parse_retry_after(fuzzlib.text(fdp, 40))
    assert hint is None or (math.isfinite(hint) and hint >= 0), hint


if __name__ == "__main__":
    fuzzlib.run(TestOneInput)
    sys.exit(0)
