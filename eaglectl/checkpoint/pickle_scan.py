"""How deeply a pickle nests its hashable containers, measured on its opcodes before anything is unpickled.

A tuple nested 200,000 levels deep costs one byte a level (`TUPLE1`). Used as a dict key or a set element, it is
hashed, and CPython hashes a tuple (or a frozenset) by hashing its items, recursively in C with no depth check:
the interpreter dies with a segfault inside the unpickler (torch's weights-only one, or the C unpickler of the
torch-free reader), before any check of the loaded object could run. Tuples and frozensets are immutable, so the
depth of each is fixed when it is built and can be followed exactly on the pickle's stack, through the memo
(lists, dicts and sets are never hashed: they count 0). Every opcode is followed by the stack effect `pickletools`
documents for it; a pickle `pickletools` cannot parse ends the scan, and the unpickler refuses it itself.
"""

from __future__ import annotations

import pickletools

MAX_NESTING = 100  # torch's own pickles nest 3-4 levels (a tensor's args tuple holds its size and stride tuples)

_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_MARK = pickletools.markobject


def tuple_nesting(data: bytes, limit: int = MAX_NESTING) -> int:
    """The deepest tuple / frozenset nesting `data` builds, counted until it exceeds `limit` (then `limit + 1`)."""
    stack: list[int | None] = []  # per value on the unpickler's stack: its nesting; None stands for a MARK
    memo: dict[int, int] = {}
    deepest = 0

    def pop_mark() -> list[int]:
        items: list[int] = []
        while stack:
            value = stack.pop()
            if value is None:
                break
            items.append(value)
        return items

    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name in ("TUPLE", "FROZENSET") or name in _TUPLE_N:
                if name in _TUPLE_N:
                    n = _TUPLE_N[name]
                    items = [v or 0 for v in stack[-n:]]
                    del stack[len(stack) - n:]
                else:
                    items = pop_mark()
                depth = 1 + max(items, default=0)
                deepest = max(deepest, depth)
                if deepest > limit:
                    return deepest
                stack.append(depth)
            elif name == "EMPTY_TUPLE":
                stack.append(1)
            elif name == "MARK":
                stack.append(None)
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else _index(arg)] = stack[-1] or 0
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(_index(arg), 0))
            elif name == "STOP":
                break
            else:  # its documented stack effect: what it takes (down to a MARK, and below it), what it leaves
                below = len(op.stack_before)
                if _MARK in op.stack_before:
                    pop_mark()
                    below = op.stack_before.index(_MARK)
                if below:
                    del stack[len(stack) - below:]
                stack.extend([0] * len(op.stack_after))
    except (ValueError, IndexError, TypeError):  # a pickle that does not parse: the unpickler names what is wrong
        pass
    return deepest


def _index(arg: object) -> int:
    """A memo index as `pickletools` parsed it (an int; anything else matches no entry)."""
    return arg if isinstance(arg, int) else -1
