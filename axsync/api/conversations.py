"""Conversation endpoints of :class:`axsync.api.ApiClient`."""

from __future__ import annotations

from collections.abc import Iterator

from axsync.api import jsonread, paging, wire
from axsync.api.base import CONVERSATION, CONVERSATIONS, MAIL_CONVERSATION, TRUE, ClientBase
from axsync.model import Conversation, ConversationMember, ConversationPage


class ConversationsMixin(ClientBase):
    def conversations_token(self, folder_id: str) -> str:
        """The sync token of the folder's conversation list (``syncTokenOnly=true``)."""
        params: dict[str, str | int] = {
            "folderId": folder_id,
            "syncTokenOnly": TRUE,
            "sort": "date",
            "dir": "ASC",
            "start": 0,
            "limit": 1,
        }
        return wire.parse_sync_token(self._json(CONVERSATIONS, params=params), CONVERSATIONS.key)

    def conversations_page(self, folder_id: str, start: int, limit: int) -> ConversationPage:
        """One page of ``GET /api/v1/conversations``, always with explicit ``sort=date``,
        ``dir=ASC``, ``start`` and ``limit``. The server may return fewer than ``limit``."""
        params: dict[str, str | int] = {
            "folderId": folder_id,
            "start": start,
            "limit": limit,
            "sort": "date",
            "dir": "ASC",
        }
        return wire.parse_conversation_page(
            self._json(CONVERSATIONS, params=params), CONVERSATIONS.key
        )

    def iter_conversations(self, folder_id: str, page_size: int = 200) -> Iterator[Conversation]:
        """Every conversation listed from ``folder_id`` (conversations span folders except
        Spam and Trash), page by page, advancing by the number returned and skipping ids
        already yielded. Not a snapshot: use :meth:`conversations_token` around it to detect
        concurrent changes."""

        def fetch(start: int, limit: int) -> tuple[str, int, tuple[Conversation, ...]]:
            page = self.conversations_page(folder_id, start, limit)
            return page.sync_token, page.total_items, page.items

        for _token, _total, fresh in paging.iter_pages(fetch, max(1, page_size), lambda c: c.id):
            yield from fresh

    def get_conversation(self, conversation_id: str, *, token_only: bool = False) -> Conversation:
        """``GET /api/v1/conversations/{id}``: the conversation with ``sync_token`` set and one
        member per mail (read page by page as a consistent snapshot, like
        :meth:`list_all_mails`: every page carries the same token, so the token and the member
        list describe the same moment). ``token_only`` (``syncTokenOnly=true``) fetches just
        the token (members empty, ``mail_count`` from ``totalItems`` if the server sends it).
        ``normalized_message_id`` stays empty here (a MailInstance does not carry it).
        NotFound if the conversation is gone (or never existed); MalformedReply if the reply
        lacks the token or the member list."""
        if token_only:
            data = self._json(CONVERSATION, conversation_id, params={"syncTokenOnly": TRUE})
            obj = jsonread.Obj(data, CONVERSATION.key)
            return Conversation(
                id=conversation_id,
                mail_count=obj.opt_int("totalItems"),
                sync_token=obj.req_str("syncToken"),
            )
        subjects: list[str] = []

        def fetch(start: int, limit: int) -> tuple[str, int, tuple[ConversationMember, ...]]:
            data = self._json(
                CONVERSATION, conversation_id, params={"start": start, "limit": limit}
            )
            token, total, subject, members = wire.parse_conversation_members(data, CONVERSATION.key)
            if start == 0:
                subjects.append(subject)
            return token, total, members

        token, members = paging.snapshot(
            fetch, 200, lambda m: m.mail_id, what=f"conversation {conversation_id}"
        )
        return Conversation(
            id=conversation_id,
            subject=subjects[-1] if subjects else "",
            mail_count=len(members),
            members=tuple(members),
            sync_token=token,
        )

    def mail_conversation(self, mail_id: str) -> Conversation:
        """The conversation a mail belongs to (``GET /api/v1/mails/{id}/conversation``), with
        members from its ``mails`` list; ``sync_token`` is None. NotFound if none."""
        data = self._json(MAIL_CONVERSATION, mail_id)
        return wire.parse_conversation(data, MAIL_CONVERSATION.key)
