"""Routes: version, login, account, index info, counters, folders, labels."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from axsync.fake.knobs import API_VERSION
from axsync.fake.state import FOLDER_TYPES, InvalidError, NotFoundError
from axsync.fake.views import folder_event, folder_instance, full_name
from axsync.fake.web import Call, Service, Unauthorized, empty_response, endpoint, error_response

INDEX_IDS = ("conversation", "sort", "search")
ACCESS_MODES = ("all", "local", "public", "shared")
QUOTA_KB = 10 * 1024 * 1024
MESSAGE_QUOTA = 1_000_000
INDEX_PROGRESS = {"uptodate": 1.0, "initialized": 1.0, "uninitialized": 0.0, "unavailable": 0.0}


@endpoint(auth="none")
def version(call: Call) -> Response:
    return JSONResponse({"apiVersion": API_VERSION, "serverVersion": call.knobs.server_version})


async def login(request: Request) -> Response:
    """``POST /api/v1/login``: Basic credentials -> ``{"sessid"}``; anything else 401."""
    service: Service = request.app.state.service
    header = request.headers.get("authorization")
    if not service.credentials_ok(header):
        return error_response(401, Unauthorized.code, "invalid credentials")
    assert header is not None
    return JSONResponse({"sessid": service.login(header).sid})


@endpoint()
def account_info(call: Call) -> Response:
    service = call.service
    local, _, domain = service.user.partition("@")
    count, size = call.mailbox.usage()
    used_kb = (size + 1023) // 1024
    return JSONResponse(
        {
            "accountName": local,
            "domainName": domain,
            "fullName": full_name(service.user),
            "folderContainerId": call.mailbox.container_id,
            "accountClass": "default",
            "totalMessageCount": MESSAGE_QUOTA,
            "usedMessageCount": count,
            "remainingMessageCount": max(MESSAGE_QUOTA - count, 0),
            "totalQuota": QUOTA_KB,
            "usedQuota": used_kb,
            "remainingQuota": max(QUOTA_KB - used_kb, 0),
            "overQuotaThreshold": 90,
            "isFirstApiLogin": bool(call.session and call.session.first_login),
            "allowConversationView": call.knobs.conversations_enabled,
            "autopurge": {"spam": False, "trash": False, "interval": 30},
            "twoFactorAuthConfigured": False,
            "restrictions": {
                "passwordPolicy": {
                    "mustChangePassword": False,
                    "contentPolicy": {
                        "enabled": False,
                        "minLength": 0,
                        "maxLength": 0,
                        "mustInclude": "letters",
                    },
                    "history": {"enabled": False, "size": 0},
                    "allowChangeByUser": True,
                    "renewalInterval": {"enabled": False, "interval": 0},
                    "expiration": {
                        "enabled": False,
                        "date": "",
                        "warningInterval": 0,
                        "inWarningInterval": False,
                    },
                },
                "temporaryAliases": {"enabled": False, "maxNumberOfAliases": 0},
                "securityPolicy": {
                    "securityMethods": {
                        "isMandatory": False,
                        "alternateEmailAddress": False,
                        "phoneNumber": False,
                        "updatePolicy": {"date": "", "warningInterval": 0, "inWarningInterval": False},
                    },
                    "twoFactorAuthPolicy": {"status": "disabled", "methods": []},
                    "usernameRecoveryMethods": [],
                    "passwordRecoveryMethods": [],
                },
            },
        }
    )


@endpoint(query=("ids", "scope"))
def index_info(call: Call) -> Response:
    ids = call.q_list("ids")
    if not ids:
        raise InvalidError("ids is required")
    scope = call.q("scope", required=True)
    call.folder_arg(scope, "scope", container_ok=True)
    out = []
    for index_id in ids:
        if index_id not in INDEX_IDS:
            raise InvalidError(f"unknown index id {index_id!r}")
        state = call.knobs.conversation_index if index_id == "conversation" else "initialized"
        out.append({"id": index_id, "state": state, "progress": INDEX_PROGRESS.get(state, 0.0)})
    return JSONResponse(out)


@endpoint(auth="basic")
def counters(call: Call) -> Response:
    return JSONResponse({"unreadCount": call.mailbox.unread_in("inbox")})


# ---------------------------------------------------------------------------- folders


@endpoint(query=("type", "accessMode", "syncTokenOnly"))
def list_folders(call: Call) -> Response:
    kind = call.q("type") or "all"
    mode = call.q("accessMode") or "all"
    if kind != "all" and kind not in FOLDER_TYPES:
        raise InvalidError(f"invalid type {kind!r}")
    if mode not in ACCESS_MODES:
        raise InvalidError(f"invalid accessMode {mode!r}")
    token, folders = call.mailbox.list_folders()
    if call.q_bool("syncTokenOnly"):
        return JSONResponse({"syncToken": token})
    items = [
        folder_instance(f, call.service)
        for f in folders
        if (kind == "all" or f.folder_type == kind) and mode in ("all", "local")
    ]
    return JSONResponse({"syncToken": token, "items": items})


@endpoint(query=("accessMode", "syncToken"), since=(10, 6, 18))
def folder_delta(call: Call) -> Response:
    mode = call.q("accessMode") or "all"
    if mode not in ACCESS_MODES:
        raise InvalidError(f"invalid accessMode {mode!r}")
    token, changes = call.mailbox.folder_delta(call.q("syncToken"))
    events = [folder_event(c, call.service) for c in changes if mode in ("all", "local")]
    return JSONResponse({"syncToken": token, "events": events})


def _folder_reply(call: Call, folder_id: str) -> Response:
    return JSONResponse(folder_instance(call.mailbox.folder(folder_id), call.service))


@endpoint(fields=("name", "type", "parentId"))
def create_folder(call: Call) -> Response:
    name = call.field_str("name", required=True)
    assert name is not None
    parent = call.field_str("parentId")
    if parent is not None:
        call.folder_arg(parent, "parentId", container_ok=True)
    folder_id = call.mailbox.add_folder(name, parent, folder_type=call.field_str("type"))
    return _folder_reply(call, folder_id)


@endpoint(fields=("name",))
def rename_folder(call: Call) -> Response:
    name = call.field_str("name", required=True)
    assert name is not None
    call.mailbox.rename_folder(call.path["folderId"], name)
    return _folder_reply(call, call.path["folderId"])


@endpoint(fields=("parentId",))
def move_folder(call: Call) -> Response:
    folder_id = call.path["folderId"]
    call.mailbox.folder_path(folder_id)  # 404 before looking at the body
    parent = call.folder_arg(call.field_str("parentId", required=True), "parentId", container_ok=True)
    call.mailbox.move_folder(folder_id, parent)
    return _folder_reply(call, folder_id)


@endpoint()
def delete_folder(call: Call) -> Response:
    call.mailbox.delete_folder(call.path["folderId"])
    return empty_response()


# ---------------------------------------------------------------------------- labels


def _label_json(label_id: str, name: str) -> dict[str, str]:
    return {"id": label_id, "name": name}


@endpoint(query=("syncTokenOnly",))
def list_labels(call: Call) -> Response:
    token, labels = call.mailbox.label_list()
    if call.q_bool("syncTokenOnly"):
        return JSONResponse({"syncToken": token})
    return JSONResponse({"syncToken": token, "items": [_label_json(i, n) for i, n in labels]})


def _label(call: Call, label_id: str) -> Response:
    for other_id, name in call.mailbox.labels():
        if other_id == label_id:
            return JSONResponse(_label_json(label_id, name))
    raise NotFoundError(f"no label {label_id!r}")


@endpoint()
def get_label(call: Call) -> Response:
    return _label(call, call.path["labelId"])


@endpoint(fields=("name",))
def create_label(call: Call) -> Response:
    name = call.field_str("name", required=True)
    assert name is not None
    return _label(call, call.mailbox.create_label(name))


@endpoint(fields=("name",))
def update_label(call: Call) -> Response:
    name = call.field_str("name", required=True)
    assert name is not None
    call.mailbox.rename_label(call.path["labelId"], name)
    return _label(call, call.path["labelId"])


@endpoint()
def delete_label(call: Call) -> Response:
    call.mailbox.delete_label(call.path["labelId"])
    return empty_response()


V1 = "/api/v1"
ROUTES = [
    Route("/api/", version, methods=["GET"]),
    Route(f"{V1}/login", login, methods=["POST"]),
    Route(f"{V1}/account/info", account_info, methods=["GET"]),
    Route(f"{V1}/account/indexinfo", index_info, methods=["GET"]),
    Route(f"{V1}/mails/counters", counters, methods=["GET"]),
    Route(f"{V1}/folders/delta", folder_delta, methods=["GET"]),
    Route(f"{V1}/folders/", list_folders, methods=["GET"]),
    Route(f"{V1}/folders", list_folders, methods=["GET"]),
    Route(f"{V1}/folders/", create_folder, methods=["POST"]),
    Route(f"{V1}/folders", create_folder, methods=["POST"]),
    Route(f"{V1}/folders/{{folderId}}", rename_folder, methods=["PATCH"]),
    Route(f"{V1}/folders/{{folderId}}", delete_folder, methods=["DELETE"]),
    Route(f"{V1}/folders/{{folderId}}/move", move_folder, methods=["POST"]),
    Route(f"{V1}/labels", list_labels, methods=["GET"]),
    Route(f"{V1}/labels/", list_labels, methods=["GET"]),
    Route(f"{V1}/labels", create_label, methods=["POST"]),
    Route(f"{V1}/labels/", create_label, methods=["POST"]),
    Route(f"{V1}/labels/{{labelId}}", get_label, methods=["GET"]),
    Route(f"{V1}/labels/{{labelId}}", update_label, methods=["PATCH"]),
    Route(f"{V1}/labels/{{labelId}}", delete_label, methods=["DELETE"]),
]
