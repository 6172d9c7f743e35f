"""Push: archive -> server, through the batch endpoints.

``plan_push`` (pure) turns local edits into batched operations; ``Pusher`` carries them out.
A conversation batch is only sent for a conversation whose member list the server confirmed
just before (its own sync token, or a full read): see docs/design.md, "Conversation batches
and tokens".
The state DB changes only after the server acknowledged a change; a 201 (asynchronous)
batch is recorded as pending and confirmed by the next pull, re-issued at most
``MAX_ATTEMPTS`` times, then reported as failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from axsync.api import ApiClient
from axsync.errors import AxsyncError, DeletionGuardError, NotFound
from axsync.statedb import FolderRow, StateDB
from axsync.store import Store
from axsync.store.keywords import atom_to_label, keywords_of, label_to_atom
from axsync.store.names import folder_path
from axsync.sync.local import Edit, LocalChanges, label_ids_for
from axsync.sync.merge import PUSHABLE_FLAGS, local_change
from axsync.sync.plan import check_deletions
from axsync.sync.report import RunReport

log = logging.getLogger("axsync.push")

CHUNK = 2000
MAX_ATTEMPTS = 3
NO_UNREAD_ROLES = ("sent", "drafts")  # conversation isUnread updates skip these folders
OUTSIDE_CONVERSATIONS = ("trash", "junk")  # the server leaves these out of conversations
#: At most this many conversations are checked on the server per push (one request each,
#: two when a stored token turned out stale); a push that would need more sends per-mail
#: ids only. 0: never use conversation batches.
CONVERSATION_CHECKS = 20


@dataclass(frozen=True, slots=True)
class MailOp:
    """One mail's part in a batch: what the DB row becomes once the server acknowledges."""

    uid: int
    mail_id: str
    kind: str  # update | label_add | label_remove | move | delete
    value: str  # JSON of the parameters
    conversation: str | None = None  # set when sent inside a conversation batch


@dataclass
class Batch:
    op: str  # the API batch op, e.g. "mails/update", "conversations/labels/add"
    params: dict[str, object]
    ids: list[str] = field(default_factory=list)  # mail or conversation ids sent
    members: list[MailOp] = field(default_factory=list)  # the mails this batch changes


@dataclass
class PushPlan:
    batches: list[Batch] = field(default_factory=list)
    new_labels: dict[str, list[int]] = field(default_factory=dict)  # atom -> uids waiting for it
    new_folders: dict[str, list[int]] = field(default_factory=dict)  # dirname -> uids moving there
    deletions: int = 0
    unchanged: list[Edit] = field(default_factory=list)  # renamed, but nothing to push

    def count(self, kind: str) -> int:
        return sum(len({m.uid for m in b.members if m.kind == kind}) for b in self.batches)


@dataclass(frozen=True, slots=True)
class PushContext:
    """What the planner needs to know besides the edits (all read by the caller)."""

    folder_of_dirname: Mapping[str, str]  # dirname -> server folder id (present, not excluded)
    role_of_folder: Mapping[str, str]
    conversation_members: Mapping[str, frozenset[int]]  # conversation id -> present uids
    atom_to_label_id: Mapping[str, str]
    #: Conversations whose member list the server confirmed (``Pusher`` checks them): only
    #: these may go as conversation batches. None: every candidate (planner tests, and the
    #: first plan from which the Pusher picks what to check).
    verified: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ConversationCheck:
    """A conversation the plan would send as a conversation batch, and the member mail ids
    it assumes (the state DB's present members): the server must list exactly these."""

    conversation_id: str
    mail_ids: frozenset[str]


def plan_push(edits: Sequence[Edit], ctx: PushContext) -> PushPlan:
    """Group every mail's local change into as few batch calls as the API allows."""
    plan = PushPlan()
    flag_groups: dict[tuple[bool | None, bool | None], list[MailOp]] = defaultdict(list)
    label_groups: dict[tuple[str, str], list[MailOp]] = defaultdict(list)
    moves: dict[str, list[MailOp]] = defaultdict(list)
    deletes: list[MailOp] = []
    change_of: dict[int, tuple[object, ...]] = {}
    edit_of: dict[int, Edit] = {}
    for e in edits:
        row = e.row
        if row.mail_id is None:
            continue
        if e.file is None:
            deletes.append(MailOp(row.uid, row.mail_id, "delete", "null"))
            continue
        for atom in e.new_atoms:
            plan.new_labels.setdefault(atom, []).append(row.uid)
        c = local_change(row.flags, row.label_ids, e.letters, e.label_ids)
        pushed = False
        if c.is_unread is not None or c.is_flagged is not None:
            value = json.dumps({"isUnread": c.is_unread, "isFlagged": c.is_flagged})
            flag_groups[(c.is_unread, c.is_flagged)].append(MailOp(row.uid, row.mail_id, "update", value))
            pushed = True
        for lid in c.add_labels:
            label_groups[("add", lid)].append(MailOp(row.uid, row.mail_id, "label_add", json.dumps(lid)))
            pushed = True
        for lid in c.remove_labels:
            label_groups[("remove", lid)].append(MailOp(row.uid, row.mail_id, "label_remove", json.dumps(lid)))
            pushed = True
        if e.file.dirname != row.dirname:
            dest = ctx.folder_of_dirname.get(e.file.dirname)
            if dest is None:
                plan.new_folders.setdefault(e.file.dirname, []).append(row.uid)
                dest = f"new:{e.file.dirname}"
            moves[dest].append(MailOp(row.uid, row.mail_id, "move", json.dumps(dest)))
            pushed = True
        change_of[row.uid] = (c.is_unread, c.is_flagged, c.add_labels, c.remove_labels,
                              e.file.dirname != row.dirname)
        edit_of[row.uid] = e
        if not pushed and not e.new_atoms:
            plan.unchanged.append(e)
    plan.deletions = len(deletes)
    whole = _whole_conversations(change_of, edit_of, ctx)
    for (unread, flagged), ops in flag_groups.items():
        params: dict[str, object] = {
            k: v for k, v in (("is_unread", unread), ("is_flagged", flagged)) if v is not None}
        conv_ops = [o for o in ops if o.uid in whole and _unread_ok(whole[o.uid], unread, ctx, edit_of)]
        _add(plan, "mails/update", params, [o for o in ops if o not in conv_ops])
        _add_conversations(plan, "conversations/update", params, conv_ops, whole)
    for (action, lid), ops in sorted(label_groups.items()):
        params = {"label_id": lid}
        conv_ops = [o for o in ops if o.uid in whole]
        _add(plan, f"mails/labels/{action}", params, [o for o in ops if o not in conv_ops])
        _add_conversations(plan, f"conversations/labels/{action}", params, conv_ops, whole)
    for dest, ops in sorted(moves.items()):
        _add(plan, "mails/move", {"destination_folder_id": dest}, ops)
    _add(plan, "mails/delete", {}, deletes)
    return plan


def _with_new_labels(e: Edit, created: Mapping[str, str]) -> Edit:
    """``e`` with the keywords that became labels counted as those labels."""
    if not e.new_atoms or not any(a in created for a in e.new_atoms):
        return e
    ids = tuple(sorted(set(e.label_ids) | {created[a] for a in e.new_atoms if a in created}))
    rest = tuple(a for a in e.new_atoms if a not in created)
    return Edit(e.row, e.file, e.letters, ids, rest)


def _whole_conversations(change_of: Mapping[int, tuple[object, ...]], edit_of: Mapping[int, Edit],
                         ctx: PushContext) -> dict[int, str]:
    """uid -> conversation id, for conversations whose every member changed the same way
    (and none moved): those go as one conversation batch instead of per-mail ids.

    Not when a member is in Trash or Spam: the server leaves those out of conversations,
    so the batch would not reach them. Not when ``ctx.verified`` is given and lacks the
    conversation: the server may hold members the state DB does not know."""
    out: dict[int, str] = {}
    for cid, members in ctx.conversation_members.items():
        if len(members) < 2 or not all(u in change_of for u in members):
            continue
        if ctx.verified is not None and cid not in ctx.verified:
            continue
        if any(ctx.role_of_folder.get(edit_of[u].row.folder_id, "") in OUTSIDE_CONVERSATIONS
               for u in members):
            continue
        changes = {change_of[u] for u in members}
        if len(changes) != 1:
            continue
        (change,) = changes
        if change[4]:  # a move: done per mail (ids change on move)
            continue
        for u in members:
            out[u] = cid
    return out


def _unread_ok(cid: str, unread: bool | None, ctx: PushContext, edit_of: Mapping[int, Edit]) -> bool:
    if unread is None:
        return True
    members = ctx.conversation_members.get(cid, frozenset())
    return all(ctx.role_of_folder.get(edit_of[u].row.folder_id, "") not in NO_UNREAD_ROLES for u in members)


def _add(plan: PushPlan, op: str, params: dict[str, object], ops: list[MailOp]) -> None:
    for i in range(0, len(ops), CHUNK):
        chunk = ops[i:i + CHUNK]
        plan.batches.append(Batch(op, dict(params), [o.mail_id for o in chunk], chunk))


def _add_conversations(plan: PushPlan, op: str, params: dict[str, object], ops: list[MailOp],
                       whole: Mapping[int, str]) -> None:
    if not ops:
        return
    by_conv: dict[str, list[MailOp]] = defaultdict(list)
    for o in ops:
        by_conv[whole[o.uid]].append(o)
    convs = sorted(by_conv)
    for i in range(0, len(convs), CHUNK):
        part = convs[i:i + CHUNK]
        members = [MailOp(o.uid, o.mail_id, o.kind, o.value, c) for c in part for o in by_conv[c]]
        plan.batches.append(Batch(op, dict(params), part, members))


def conversations_to_check(plan: PushPlan, limit: int = CONVERSATION_CHECKS) -> list[ConversationCheck]:
    """The conversation batches of ``plan`` worth a check on the server (pure).

    A conversation batch is only safe once the server confirmed the conversation's member
    list (one request each; see ``Pusher._check_conversation``), and it never saves a batch
    request: one per-mail batch carries up to ``CHUNK`` ids. So when a change (an op and its
    parameters) also has per-mail ids, the conversations' members ride along in that batch,
    which is sent anyway, and nothing is checked. Only a change made of whole conversations
    alone keeps its conversation batch (it replaces the per-mail batch one for one; the
    checks are its price), and a conversation is checked only when every change it takes
    part in is such a change. More than ``limit`` such conversations: none is checked (the
    unchecked ones would need a per-mail batch of the same change anyway)."""
    per_mail: set[tuple[str, str]] = set()  # (change, params) with per-mail ids
    groups: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(dict)
    for b in plan.batches:
        family, _, change = b.op.partition("/")
        key = (change, json.dumps(b.params, sort_keys=True))
        if family == "conversations":
            for m in b.members:
                groups[key].setdefault(m.conversation or "", set()).add(m.mail_id)
        elif b.ids:
            per_mail.add(key)
    members: dict[str, set[str]] = {}
    rides_along: set[str] = set()
    for key, convs in groups.items():
        for cid, ids in convs.items():
            members.setdefault(cid, set()).update(ids)
            if key in per_mail:
                rides_along.add(cid)
    wanted = sorted(c for c in members if c not in rides_along)
    if len(wanted) > max(0, limit):
        return []
    return [ConversationCheck(c, frozenset(members[c])) for c in wanted]


# ============================================================================ executor


@dataclass
class Pusher:
    api: ApiClient
    store: Store
    db: StateDB
    report: RunReport
    conflict_policy: str = "server"
    max_delete: int = 0
    force: bool = False
    dry_run: bool = False
    stop_after: int | None = None  # tests: raise Interrupted after this many steps
    touched_folders: set[str] = field(default_factory=set)
    async_pending: int = 0
    async_wait: float = 10.0  # seconds a move or delete waits for a 201 job on its mails
    _async_uids: set[int] = field(default_factory=set)  # in a 201 job not yet waited for
    accepted_later: dict[int, str] = field(default_factory=dict)  # uid -> mail id, 201 this run
    _async_folders: set[str] = field(default_factory=set)
    _steps: int = 0
    _by_atom: dict[str, str] | None = None
    _keyword_maps: dict[str, dict[int, str]] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)  # uid -> file name the scan saw
    conversation_checks: int = CONVERSATION_CHECKS
    _checked: dict[str, ConversationCheck] = field(default_factory=dict)  # confirmed by the server
    _conv_sent: dict[str, bool] = field(default_factory=dict)  # cid -> every batch applied at once

    def context(self, edits: Sequence[Edit] | None = None) -> PushContext:
        """The planner's view of the archive. With ``edits``, only the conversations those
        touch are loaded (a conversation no edited mail belongs to cannot be changed as a
        whole): memory follows the change, not the archive."""
        every = [f for f in self.db.folders() if f.state == "present"]
        folders = [f for f in every if not f.excluded]
        members: dict[str, set[int]] = defaultdict(set)
        # A conversation batch changes every member the server has, also those in
        # folders this archive excludes (it does not know them): with such folders, mails
        # are only ever changed one by one.
        if not any(f.excluded and f.role not in OUTSIDE_CONVERSATIONS for f in every):
            sql = "SELECT conversation_id, uid FROM messages WHERE state='present' AND conversation_id IS NOT NULL"
            if edits is None:
                for cid, uid in self.db.execute(sql).fetchall():
                    members[cid].add(uid)
            else:
                wanted = sorted({e.row.conversation_id for e in edits if e.row.conversation_id})
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    for cid, uid in self.db.execute(f"{sql} AND conversation_id IN ({marks})", chunk).fetchall():
                        members[cid].add(uid)
        labels = self.db.labels()
        return PushContext(
            {f.dirname: f.id for f in folders}, {f.id: f.role for f in folders},
            {c: frozenset(u) for c, u in members.items()},
            {atom: lid for lid, (_name, atom) in labels.items()},
        )

    def run(self, changes: LocalChanges) -> PushPlan:
        for row, f in changes.adopted:
            log.info("adopting %s/%s as uid %s (re-written by another program)", f.dirname, f.filename, row.uid)
        if changes.unknown:
            self.report.local_new = len(changes.unknown)
            self.report.notes.append(
                f"{len(changes.unknown)} local file(s) have no server copy; they are kept. The REST "
                "API cannot upload raw mail: use `axsync restore --imap` to put them on a server")
        ctx = self.context(changes.edits)
        plan = plan_push(changes.edits, ctx)
        total = self.db.count_messages("state = 'present'")
        check = check_deletions(plan.deletions, total, self.max_delete, self.force)
        if not check.allowed:
            raise DeletionGuardError(
                f"{plan.deletions} archived messages were deleted locally, more than max_delete "
                f"allows ({check.limit}); nothing was deleted on the server. Run with --force "
                "to delete them there")
        if self.dry_run:
            self._describe(self._verified_plan(changes.edits, ctx, plan))
            return plan
        self._adopt(changes)
        self._names = {e.row.uid: e.file.filename for e in changes.edits if e.file is not None}
        edits = changes.edits
        if plan.new_labels:
            # Labels first, then plan again: a new label's additions then travel in the
            # same per-label batches as the others, before any move changes the mail ids.
            created = self._create_labels(plan)
            if created:
                edits = [_with_new_labels(e, created) for e in changes.edits]
                ctx = self.context(edits)
                plan = plan_push(edits, ctx)
        plan = self._verified_plan(edits, ctx, plan)
        self._create_folders(plan)
        for batch in plan.batches:
            if batch.op in _ID_CHANGING and self._async_uids & {m.uid for m in batch.members}:
                # A 201 job of this run names some of these mails by their current ids; a
                # move or delete applied before it runs would give them new ids and the
                # job would skip them. Let it land first.
                self._await_async()
            self._send(batch)
        self._record_conversation_tokens()
        with self.db.transaction():
            for e in plan.unchanged:
                if e.file is not None:
                    self.db.update_message(e.row.uid, filename=e.file.filename, history=False)
        return plan

    # ------------------------------------------------------------ conversation checks

    def _verified_plan(self, edits: Sequence[Edit], ctx: PushContext, plan: PushPlan) -> PushPlan:
        """``plan`` with conversation batches only for conversations whose member list the
        server confirmed; the others' members go as per-mail ids (planned again)."""
        candidates = {b_id for b in plan.batches if b.op.startswith("conversations/") for b_id in b.ids}
        if not candidates:
            return plan
        for check in conversations_to_check(plan, self.conversation_checks):
            if self._check_conversation(check):
                self._checked[check.conversation_id] = check
        verified = frozenset(self._checked) & candidates
        if verified == candidates:
            return plan
        return plan_push(edits, replace(ctx, verified=verified))

    def _check_conversation(self, check: ConversationCheck) -> bool:
        """Does the server's conversation hold exactly the mails the plan assumes? A stored
        token equal to the server's vouches for the stored member list (1 request); else
        the conversation is read (1 request; 2 with a stale token) and its ``mailId``s
        compared. Any doubt (gone, an error, a different member list) says no."""
        cid = check.conversation_id
        stored = self.db.conversation_token(cid)
        try:
            if stored is not None and self.api.get_conversation(cid, token_only=True).sync_token == stored:
                return True
            conv = self.api.get_conversation(cid)
        except NotFound:
            log.info("conversation %s is gone on the server; its members are changed one by one", cid)
            self._forget_conversation_token(cid, stored)
            return False
        except AxsyncError as exc:
            log.warning("conversation %s not checked (%s); its members are changed one by one", cid, exc)
            return False
        server = {m.mail_id for m in conv.members}
        if server == check.mail_ids:
            return True
        log.info("conversation %s: the server has %d mail(s) the archive does not know and lacks %d it "
                 "knows; its members are changed one by one", cid, len(server - check.mail_ids),
                 len(check.mail_ids - server))
        self._forget_conversation_token(cid, stored)
        return False

    def _forget_conversation_token(self, cid: str, stored: str | None) -> None:
        if stored is not None and not self.dry_run:
            with self.db.transaction():
                self.db.set_conversation_token(cid, None)

    def _record_conversation_tokens(self) -> None:
        """After the batches: a conversation whose batches were all applied at once (200, not
        failed) is read again and its new token stored if the member list is still the one
        checked (the batch itself changed the token; a full read, not a token-only one, so a
        mail that joined meanwhile cannot be vouched for). Otherwise the token is cleared: a
        201 job has not run yet, so any token read now would be stale the moment it does."""
        for cid, applied in sorted(self._conv_sent.items()):
            token: str | None = None
            check = self._checked.get(cid)
            if applied and check is not None:
                try:
                    conv = self.api.get_conversation(cid)
                except AxsyncError as exc:
                    log.info("conversation %s not read again after the push (%s)", cid, exc)
                else:
                    if {m.mail_id for m in conv.members} == check.mail_ids:
                        token = conv.sync_token
            with self.db.transaction():
                self.db.set_conversation_token(cid, token)
        self._conv_sent.clear()

    def _tick(self) -> None:
        """The ``stop_after`` test hook: one step per server write and one per DB record
        of its outcome, so a crash is simulated on both sides of every request."""
        self._steps += 1
        if self.stop_after is not None and self._steps > self.stop_after:
            from axsync.sync.pull import Interrupted

            raise Interrupted(f"push stopped after {self.stop_after} steps (test hook)")

    def _describe(self, plan: PushPlan) -> None:
        for b in plan.batches:
            self.report.plan.append({"push": b.op, "params": {k: str(v) for k, v in b.params.items()},
                                     "items": len(b.ids), "mails": len(b.members)})
        for atom in plan.new_labels:
            self.report.plan.append({"push": "labels/create", "name": atom_to_label(atom)})
        for dirname in plan.new_folders:
            self.report.plan.append({"push": "folders/create", "path": "/".join(folder_path(dirname, strict=False))})
        self._count(plan.batches)

    def _count(self, batches: Sequence[Batch]) -> None:
        kinds: dict[str, set[int]] = defaultdict(set)
        for b in batches:
            for m in b.members:
                kinds[m.kind].add(m.uid)
        self.report.pushed.flags += len(kinds["update"])
        self.report.pushed.labels += len(kinds["label_add"] | kinds["label_remove"])
        self.report.pushed.moved += len(kinds["move"])
        self.report.pushed.deleted += len(kinds["delete"])

    def _adopt(self, changes: LocalChanges) -> None:
        with self.db.transaction():
            for row, f in changes.adopted:
                self.db.update_message(row.uid, base=f.base, filename=f.filename, history=False)

    def _create_labels(self, plan: PushPlan) -> dict[str, str]:
        """Create the labels that new keywords stand for; atom -> label id of those that
        exist now. A refused name fails the items that carry the keyword (the keyword
        stays in the file; the mails' other changes are still sent)."""
        created: dict[str, str] = {}
        known = {name.casefold(): lid for lid, (name, _atom) in self.db.labels().items()}
        listed = False
        for atom, uids in plan.new_labels.items():
            name = atom_to_label(atom)
            lid = known.get(name.casefold())
            if lid is None:
                self._tick()
                try:
                    label = self.api.create_label(name)
                except AxsyncError as exc:
                    if not listed:  # created by an interrupted run, or by another client?
                        listed = True
                        try:
                            for lb in self.api.list_labels().items:
                                known.setdefault(lb.name.casefold(), lb.id)
                                self._remember_label(lb.id, lb.name)
                        except AxsyncError:
                            pass
                    lid = known.get(name.casefold())
                    if lid is None:
                        for uid in uids:
                            self.report.fail(f"uid {uid} keyword {atom!r}",
                                             f"the server refused to create label {name!r}: {exc}")
                        continue
                else:
                    lid = label.id
                    known[label.name.casefold()] = lid
                    self._remember_label(lid, label.name)
                self._by_atom = None
                self._tick()
            created[atom] = lid
        return created

    def _remember_label(self, lid: str, name: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO labels (id, name, atom, state) VALUES (?,?,?,'present')",
                (lid, name, label_to_atom(name)),
            )

    def _create_folders(self, plan: PushPlan) -> None:
        for dirname, uids in plan.new_folders.items():
            try:
                fid = self._ensure_server_folder(folder_path(dirname, strict=False), dirname)
            except AxsyncError as exc:
                for uid in uids:
                    self.report.fail(f"uid {uid} move", f"cannot create folder for {dirname!r}: {exc}")
                plan.batches = [b for b in plan.batches
                                if b.params.get("destination_folder_id") != f"new:{dirname}"]
                continue
            for b in plan.batches:
                if b.params.get("destination_folder_id") == f"new:{dirname}":
                    b.params["destination_folder_id"] = fid

    def _ensure_server_folder(self, path: tuple[str, ...], dirname: str) -> str:
        by_path = {f.path: f for f in self.db.folders() if f.state == "present"}
        parent_id = (self.db.account() or {}).get("folder_container_id")
        if not parent_id:
            parent_id = self.api.account_info().folder_container_id
        for depth in range(1, len(path) + 1):
            sub = path[:depth]
            existing = by_path.get(sub)
            if existing is not None:
                parent_id = existing.id
                continue
            self._tick()
            try:
                created = self.api.create_folder(sub[-1], parent_id)
                folder_id, name = created.id, created.name
            except AxsyncError:
                # created by a run killed before it recorded the folder (or by another
                # client since the last pull)?
                found = next((f for f in self.api.list_folders().items
                              if f.parent_id == parent_id and f.name == sub[-1]), None)
                if found is None:
                    raise
                folder_id, name = found.id, found.name
            self._tick()
            now = int(time.time())
            sub_dirname = dirname if depth == len(path) else "." + ".".join(
                dirname.lstrip(".").split(".")[:depth])
            with self.db.transaction():
                self.db.upsert_folder(FolderRow(folder_id, parent_id, name, sub, sub_dirname,
                                                "", None, None, None, None, False, "present"), now)
            parent_id = folder_id
        return str(parent_id)

    def _send(self, batch: Batch) -> None:
        if not batch.ids:
            return
        self._tick()
        conversations = batch.op.startswith("conversations/")
        try:
            results = self.api.batch(batch.op, batch.ids, chunk_size=CHUNK, **batch.params)
        except AxsyncError as exc:
            for m in batch.members:
                self.report.fail(f"mail {m.mail_id} {batch.op}", str(exc))
            if conversations:
                self._conv_sent.update(dict.fromkeys(batch.ids, False))
            return
        self._tick()
        failed: set[str] = set()
        pending = False
        job_key: str | None = None
        for r in results:
            failed.update(r.failed_items)
            if r.is_async:
                pending = True
                job_key = r.job_key
        if conversations:
            for cid in batch.ids:
                self._conv_sent[cid] = self._conv_sent.get(cid, True) and not pending and cid not in failed
        ok_members, bad = self._split(batch, failed)
        for m in bad:
            self.report.fail(f"mail {m.mail_id} {batch.op}", "the server reported this item as failed")
        self._count([Batch(batch.op, batch.params, [], ok_members)])
        folders = set()
        for m in ok_members:
            row = self.db.message_by_uid(m.uid)
            if row is not None:
                folders.add(row.folder_id)
        self.touched_folders |= folders
        if pending:
            self.async_pending += len(ok_members)
            self._record_pending(ok_members, job_key)
            self._async_folders |= folders
            for m in ok_members:
                self._async_uids.add(m.uid)
                self.accepted_later[m.uid] = m.mail_id
        else:
            self._apply(batch, ok_members)

    def wait_for_jobs(self, folders: set[str]) -> None:
        """Let this run's 201 jobs land in ``folders`` (see :func:`wait_for_async`)."""
        tokens = {f.id: f.content_token for f in self.db.folders()}
        wait_for_async(self.api, set(folders), tokens, timeout=self.async_wait)

    def _await_async(self) -> None:
        log.info("waiting for %d change(s) the server accepted for later (201) before moving "
                 "or deleting those mails", len(self._async_uids))
        self.wait_for_jobs(self._async_folders)
        self._async_uids.clear()
        self._async_folders.clear()

    @staticmethod
    def _split(batch: Batch, failed: set[str]) -> tuple[list[MailOp], list[MailOp]]:
        if not failed:
            return list(batch.members), []
        ok: list[MailOp] = []
        bad: list[MailOp] = []
        for m in batch.members:
            key = m.conversation if m.conversation is not None else m.mail_id
            (bad if key in failed else ok).append(m)
        return ok, bad

    def _record_pending(self, members: Sequence[MailOp], job_key: str | None) -> None:
        now = int(time.time())
        with self.db.transaction():
            for m in members:
                prev = self.db.execute(
                    "SELECT attempts FROM push_pending WHERE uid=? AND op=? AND value=?",
                    (m.uid, m.kind, m.value)).fetchone()
                if prev and prev[0] >= MAX_ATTEMPTS:
                    self.report.fail(f"mail {m.mail_id} {m.kind}",
                                     f"the server accepted this change {prev[0]} times (201) but never applied it")
                self.db.execute(
                    "INSERT INTO push_pending (uid, op, value, job_key, attempts, first_at, last_at) "
                    "VALUES (?,?,?,?,1,?,?) ON CONFLICT(uid, op, value) DO UPDATE SET "
                    "attempts = attempts + 1, job_key = excluded.job_key, last_at = excluded.last_at",
                    (m.uid, m.kind, m.value, job_key, now, now))

    def _apply(self, batch: Batch, members: Sequence[MailOp]) -> None:
        """The server acknowledged: the state DB now agrees with the file."""
        with self.db.transaction():
            for m in members:
                row = self.db.message_by_uid(m.uid)
                if row is None:
                    continue
                value = json.loads(m.value)
                if m.kind == "update":
                    flags = set(row.flags)
                    if value.get("isUnread") is not None:
                        (flags.discard if value["isUnread"] else flags.add)("S")
                    if value.get("isFlagged") is not None:
                        (flags.add if value["isFlagged"] else flags.discard)("F")
                    self.db.update_message(row.uid, flags="".join(sorted(flags)))
                elif m.kind in ("label_add", "label_remove"):
                    labels = set(row.label_ids)
                    (labels.add if m.kind == "label_add" else labels.discard)(value)
                    self.db.update_message(row.uid, label_ids=tuple(labels))
                elif m.kind == "move":
                    dest = str(batch.params.get("destination_folder_id", value))
                    dirname = self._dirname_of(dest) or row.dirname
                    self.db.update_message(row.uid, folder_id=dest, dirname=dirname)
                    self.touched_folders.add(dest)
                elif m.kind == "delete":
                    self.db.update_message(row.uid, state="tombstoned", mail_id=None,
                                           deleted_at=int(time.time()))
                self._sync_filename(row.uid)
                self.db.execute("DELETE FROM push_pending WHERE uid=? AND op=?", (m.uid, m.kind))

    def _dirname_of(self, folder_id: str) -> str | None:
        row = self.db.execute("SELECT dirname FROM folders WHERE id=?", (folder_id,)).fetchone()
        return str(row[0]) if row else None

    def _sync_filename(self, uid: int) -> None:
        """Record the file's current name as agreed, but only when everything it says that
        can be pushed (S, F, labels, folder) now matches the row: a part that failed (or a
        keyword whose label the server refused) must stay visible to the next run."""
        row = self.db.message_by_uid(uid)
        if row is None or row.state != "present":
            return
        # The scan's name first: the row still has the old one, and a missed hint lists the
        # whole folder (per pushed mail: quadratic on big folders).
        f = self.store.locate(row.dirname, row.base, hint=self._names.get(uid, row.filename))
        if f is None:
            return
        info = f.filename.rsplit(":2,", 1)[1] if ":2," in f.filename else ""
        atoms = keywords_of(info, self._folder_keywords(f.dirname))
        if self._by_atom is None:
            self._by_atom = {atom: lid for lid, (_n, atom) in self.db.labels().items()}
        ids, new_atoms = label_ids_for(atoms, self._by_atom)
        same_flags = set(info) & PUSHABLE_FLAGS == set(row.flags) & PUSHABLE_FLAGS
        if same_flags and not new_atoms and ids == tuple(sorted(row.label_ids)):
            self.db.update_message(uid, filename=f.filename, history=False)

    def _folder_keywords(self, dirname: str) -> dict[int, str]:
        mapping = self._keyword_maps.get(dirname)
        if mapping is None:
            mapping = self._keyword_maps[dirname] = self.store.keywords(dirname)
        return mapping


def clear_confirmed(db: StateDB, still_changed: set[int]) -> None:
    """Pending pushes whose mail no longer differs from the server were applied."""
    with db.transaction():
        for (uid,) in db.execute("SELECT DISTINCT uid FROM push_pending").fetchall():
            if uid not in still_changed:
                db.execute("DELETE FROM push_pending WHERE uid = ?", (uid,))


#: Batch ops after which the server knows the mails under other ids (or not at all).
_ID_CHANGING = frozenset({"mails/move", "mails/delete", "conversations/move", "conversations/delete"})


def wait_for_async(api: ApiClient, folders: set[str], tokens: Mapping[str, str | None],
                   timeout: float = 10.0) -> None:
    """After 201 batches: poll the touched folders' tokens until each has moved and then
    stayed put for one poll (several jobs may land one after the other), or time out.
    No status endpoint exists, so this is the best signal that the jobs have run."""
    deadline = time.monotonic() + timeout
    last = {fid: tokens.get(fid) for fid in folders}
    moved: set[str] = set()
    remaining = set(folders)
    delay = 0.2
    while remaining and time.monotonic() < deadline:
        time.sleep(delay)
        for fid in sorted(remaining):
            try:
                token = api.mails_token(fid)
            except AxsyncError:
                remaining.discard(fid)
                continue
            if token != last[fid]:
                last[fid] = token
                moved.add(fid)
            elif fid in moved:
                remaining.discard(fid)  # moved, then quiet for a whole interval
        delay = min(delay * 1.5, 1.0)
