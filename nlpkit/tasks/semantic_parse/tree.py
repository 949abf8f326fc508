"""TOP trees (Gupta et al. 2018): parsing, validation, the RNNG oracle and the valid-action rules.

A TOP tree is a bracketed string over the tokenized utterance: ``[IN:GET_WEATHER what is [SL:DATE
today ] ]``. A non-terminal opens with ``[LABEL`` (``IN:`` an intent, ``SL:`` a slot) and closes with a
standalone ``]``. The rules every tree here obeys, and every parse the decoder produces:

- the root is an intent; intents contain slots and tokens; slots contain intents and tokens;
- every non-terminal contains at least one token (somewhere below it);
- at most ``max_open`` non-terminals are open at once (the tree's depth);
- the terminals, in order, are the tokenized utterance.

The transition system is top-down (Dyer et al. 2016): ``NT(label)`` opens a non-terminal, ``SHIFT``
moves the next buffer token onto the stack, ``REDUCE`` closes the innermost open non-terminal. The
oracle turns a tree into its actions; ``build_tree`` turns actions back into the tree, refusing any
sequence the rules forbid, so a decoded parse is well formed exactly when it builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

INTENT_PREFIX = "IN:"
SLOT_PREFIX = "SL:"
SHIFT = "SHIFT"
REDUCE = "REDUCE"


class TreeError(ValueError):
    """A string or action sequence that is not a well-formed TOP tree; the message says why."""


@dataclass
class Tree:
    """A non-terminal: its label and its children (tokens as ``str``, or sub-trees)."""

    label: str
    children: list[Tree | str] = field(default_factory=list)

    @property
    def is_intent(self) -> bool:
        return self.label.startswith(INTENT_PREFIX)

    def tokens(self) -> list[str]:
        """The terminals below this node, in order."""
        out: list[str] = []
        for child in self.children:
            out.extend(child.tokens() if isinstance(child, Tree) else [child])
        return out

    def __str__(self) -> str:
        inner = " ".join(str(child) for child in self.children)
        return f"[{self.label} {inner} ]" if inner else f"[{self.label} ]"

    def brackets(self, start: int = 0) -> list[tuple[str, int, int]]:
        """Every non-terminal as ``(label, first token, one past the last token)``, this one first."""
        spans: list[tuple[str, int, int]] = []
        position = start
        for child in self.children:
            if isinstance(child, Tree):
                inner = child.brackets(position)
                spans.extend(inner)
                position = inner[0][2]
            else:
                position += 1
        return [(self.label, start, position), *spans]


def label_kind(label: str) -> str:
    """``"intent"`` or ``"slot"`` from the label's prefix; anything else is a ``TreeError``."""
    if label.startswith(INTENT_PREFIX) and len(label) > len(INTENT_PREFIX):
        return "intent"
    if label.startswith(SLOT_PREFIX) and len(label) > len(SLOT_PREFIX):
        return "slot"
    raise TreeError(f"label {label!r} is neither an intent (IN:...) nor a slot (SL:...)")


def parse_tree(text: str, max_open: int | None = None) -> Tree:
    """Parse and validate one bracketed TOP tree (see the module docstring for the rules)."""
    pieces = text.split()
    if not pieces:
        raise TreeError("empty tree")
    if not pieces[0].startswith("["):
        raise TreeError(f"the tree must start with an intent '[IN:...', not {pieces[0]!r}")
    stack: list[Tree] = []
    root: Tree | None = None
    for index, piece in enumerate(pieces):
        if root is not None:
            raise TreeError(f"text after the root closed: {' '.join(pieces[index:])!r}")
        if piece.startswith("["):
            label = piece[1:]
            kind = label_kind(label)
            if not stack and kind != "intent":
                raise TreeError(f"the root must be an intent, not the slot {label!r}")
            if stack and kind != ("slot" if stack[-1].is_intent else "intent"):
                parent = stack[-1].label
                raise TreeError(f"{label!r} inside {parent!r}: intents contain slots, slots contain intents")
            node = Tree(label)
            if stack:
                stack[-1].children.append(node)
            stack.append(node)
            if max_open is not None and len(stack) > max_open:
                raise TreeError(f"{len(stack)} non-terminals open at once; the limit is {max_open}")
        elif piece == "]":
            if not stack:
                raise TreeError("unbalanced brackets: ']' with no open non-terminal")
            node = stack.pop()
            if not node.tokens():
                raise TreeError(f"{node.label!r} contains no token")
            if not stack:
                root = node
        elif "[" in piece or "]" in piece:
            raise TreeError(f"token {piece!r} contains a bracket (labels open with '[IN:' or '[SL:')")
        else:
            if not stack:
                raise TreeError(f"token {piece!r} outside the root")
            stack[-1].children.append(piece)
    if root is None:
        raise TreeError(f"unbalanced brackets: {len(stack)} non-terminal(s) never closed")
    return root


def oracle(tree: Tree) -> list[str]:
    """The top-down action sequence that builds ``tree``: ``NT(label)`` is written as the label."""
    actions = [tree.label]
    for child in tree.children:
        actions.extend(oracle(child) if isinstance(child, Tree) else [SHIFT])
    actions.append(REDUCE)
    return actions


@dataclass
class ParserState:
    """What the valid-action rules look at: open non-terminals, whether the innermost has a child,
    tokens left in the buffer, and whether the root has closed."""

    n_tokens: int
    max_open: int
    open_kinds: list[str] = field(default_factory=list)  # innermost last
    has_child: list[bool] = field(default_factory=list)
    shifted: int = 0
    finished: bool = False

    def allowed(self) -> tuple[bool, bool, bool, bool]:
        """``(shift, reduce, open an intent, open a slot)``: which kinds of action are valid now."""
        if self.finished:
            return False, False, False, False
        buffer_left = self.shifted < self.n_tokens
        if not self.open_kinds:  # nothing built yet: only the root intent
            return False, False, buffer_left, False
        can_open = buffer_left and len(self.open_kinds) < self.max_open
        top = self.open_kinds[-1]
        shift = buffer_left
        reduce = self.has_child[-1] and (len(self.open_kinds) > 1 or not buffer_left)
        return shift, reduce, can_open and top == "slot", can_open and top == "intent"

    def apply(self, action: str) -> None:
        shift, reduce, intent, slot = self.allowed()
        if action == SHIFT:
            if not shift:
                raise TreeError(f"SHIFT not allowed here ({self._where()})")
            self.shifted += 1
            self.has_child[-1] = True
        elif action == REDUCE:
            if not reduce:
                raise TreeError(f"REDUCE not allowed here ({self._where()})")
            self.open_kinds.pop()
            self.has_child.pop()
            if self.has_child:
                self.has_child[-1] = True
            else:
                self.finished = True
        else:
            kind = label_kind(action)
            if not (intent if kind == "intent" else slot):
                raise TreeError(f"NT({action}) not allowed here ({self._where()})")
            self.open_kinds.append(kind)
            self.has_child.append(False)

    def _where(self) -> str:
        return (
            f"{len(self.open_kinds)} open non-terminal(s), {self.n_tokens - self.shifted} token(s) left"
            + (", root closed" if self.finished else "")
        )


def build_tree(actions: Iterable[str], tokens: Sequence[str], max_open: int) -> Tree:
    """The tree an action sequence builds over ``tokens``; an action the rules forbid, or a sequence
    that stops before the root has closed, is a ``TreeError``."""
    state = ParserState(len(tokens), max_open)
    stack: list[Tree] = []
    root: Tree | None = None
    for action in actions:
        state.apply(action)
        if action == SHIFT:
            stack[-1].children.append(tokens[state.shifted - 1])
        elif action == REDUCE:
            node = stack.pop()
            if not stack:
                root = node
        else:
            node = Tree(action)
            if stack:
                stack[-1].children.append(node)
            stack.append(node)
    if root is None:
        raise TreeError(f"the actions stop before the root closed ({state._where()})")
    return root


__all__ = [
    "INTENT_PREFIX",
    "REDUCE",
    "SHIFT",
    "SLOT_PREFIX",
    "ParserState",
    "Tree",
    "TreeError",
    "build_tree",
    "label_kind",
    "oracle",
    "parse_tree",
]
