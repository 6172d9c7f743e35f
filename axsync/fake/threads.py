"""Conversation threading: union-find over Message-ID / In-Reply-To / References.

Every message id ever seen is a node; a message joins its own id with the ids it refers
to, so a conversation is a connected component. Components only ever merge; when two
merge, the older conversation number survives, which keeps conversation ids stable.
Membership (which mails are in a component right now) is tracked per root; callers filter
out mails in excluded folders (Spam, Trash) when they read it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable


def conversation_id(owner: str, number: int) -> str:
    text = f"{owner}_c_{number}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


class Threader:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._parent: dict[str, str] = {}
        self._number: dict[str, int] = {}  # root -> conversation number
        self._members: dict[str, set[int]] = {}  # root -> mail uids
        self._seq: dict[str, int] = {}  # root -> last modification touching the conversation
        self._node_of: dict[int, str] = {}  # mail uid -> its node
        self._root_of_number: dict[int, str] = {}
        self._next = 1

    # ------------------------------------------------------------------ union-find

    def _node(self, key: str) -> str:
        if key not in self._parent:
            self._parent[key] = key
            self._number[key] = self._next
            self._root_of_number[self._next] = key
            self._next += 1
        return key

    def _find(self, key: str) -> str:
        root = key
        parent = self._parent
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:
            parent[key], key = root, parent[key]
        return root

    def _union(self, a: str, b: str) -> str:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return ra
        if self._number[rb] < self._number[ra]:
            ra, rb = rb, ra
        # ra (the older conversation) survives as root
        self._parent[rb] = ra
        del self._root_of_number[self._number.pop(rb)]
        small = self._members.pop(rb, set())
        if small:
            self._members.setdefault(ra, set()).update(small)
        self._seq[ra] = max(self._seq.get(ra, 0), self._seq.pop(rb, 0))
        return ra

    # ------------------------------------------------------------------ mails

    def add(self, uid: int, message_id: str, parents: Iterable[str], seq: int) -> None:
        node = self._node(message_id or f"\0{uid}")
        for ref in parents:
            node = self._union(node, self._node(ref))
        root = self._find(node)
        self._node_of[uid] = root
        self._members.setdefault(root, set()).add(uid)
        self._seq[root] = seq

    def remove(self, uid: int, seq: int) -> None:
        node = self._node_of.pop(uid, None)
        if node is None:
            return
        root = self._find(node)
        members = self._members.get(root)
        if members is not None:
            members.discard(uid)
        self._seq[root] = seq

    def touch(self, uid: int, seq: int) -> None:
        node = self._node_of.get(uid)
        if node is not None:
            self._seq[self._find(node)] = seq

    # ------------------------------------------------------------------ queries

    def conversation_of(self, uid: int) -> str:
        return conversation_id(self._owner, self._number[self._find(self._node_of[uid])])

    def root_of(self, uid: int) -> str:
        return self._find(self._node_of[uid])

    def root_for(self, conv_id: str) -> str | None:
        """The current root of a conversation id, None if unknown (or merged away)."""
        try:
            text = base64.urlsafe_b64decode(conv_id + "=" * (-len(conv_id) % 4)).decode()
            owner, marker, number = text.rsplit("_", 2)
        except (ValueError, UnicodeDecodeError):
            return None
        if owner != self._owner or marker != "c" or not number.isdigit():
            return None
        return self._root_of_number.get(int(number))

    def id_of_root(self, root: str) -> str:
        return conversation_id(self._owner, self._number[root])

    def roots(self) -> list[str]:
        """Every component that has members right now."""
        return [root for root, members in self._members.items() if members]

    def members(self, root: str) -> set[int]:
        return self._members.get(root, set())

    def seq(self, root: str) -> int:
        return self._seq.get(root, 0)
