"""How deeply a pickle nests its tuples, measured on its opcodes before anything is unpickled.

A tuple nested 200,000 levels deep costs one byte a level (`TUPLE1`). Used as a dict key, it is hashed, and
CPython hashes a tuple by hashing its items, recursively in C with no depth check: the interpreter dies with a
segfault inside torch's weights-only unpickler, before any check of the loaded object could run. Tuples are
immutable, so the depth of each is fixed when it is built and can be followed exactly on the pickle's stack
(lists, dicts and sets are never hashed: they count 0). Only the opcodes torch's weights-only unpickler accepts are
followed; at any other the scan stops, and torch refuses the pickle itself.
"""

from __future__ import annotations

import pickletools

MAX_NESTING = 100  # torch's own pickles nest 3-4 levels (a tensor's args tuple holds its size and stride tuples)

_PUSH = frozenset({"GLOBAL", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BININT",
                   "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "LONG1"})
_POP = {"BUILD": 1, "APPEND": 1, "SETITEM": 2}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def tuple_nesting(data: bytes, limit: int = MAX_NESTING) -> int:
    """The deepest tuple-in-tuple nesting `data` builds, counted until it exceeds `limit` (then `limit + 1`)."""
    stack: list[int | None] = []  # per value on the unpickler's stack: its tuple depth; None marks a MARK
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
            if name in _PUSH:
                stack.append(0)
            elif name == "EMPTY_TUPLE":
                stack.append(1)
            elif name in _TUPLE_N or name == "TUPLE":
                if name == "TUPLE":
                    items = pop_mark()
                else:
                    n = _TUPLE_N[name]
                    items = [v or 0 for v in stack[-n:]]
                    del stack[-n:]
                depth = 1 + max(items, default=0)
                deepest = max(deepest, depth)
                if deepest > limit:
                    return deepest
                stack.append(depth)
            elif name == "MARK":
                stack.append(None)
            elif name in ("APPENDS", "SETITEMS"):
                pop_mark()
            elif name in _POP:
                del stack[len(stack) - _POP[name]:]
            elif name in ("NEWOBJ", "REDUCE"):  # (callable, args) -> the result: no tuple of ours
                del stack[len(stack) - 2:]
                stack.append(0)
            elif name == "BINPERSID":
                stack[-1:] = [0]
            elif name in ("BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = (stack[-1] or 0) if stack else 0
            elif name in ("BINGET", "LONG_BINGET") and isinstance(arg, int):
                stack.append(memo.get(arg, 0))
            elif name != "PROTO":  # STOP; or an opcode torch refuses, and says so itself
                break
    except ValueError:  # a pickle pickletools cannot parse: torch names what is wrong with it
        pass
    return deepest
