"""What each serving engine does with a drafter directory, as data and pure functions over configs and tensor
metadata: which names it loads, skips or renames, which config keys it reads and with what default, which
target layers it captures, how its launch flags are spelt. One sibling package per engine, each with the same
kinds of tables; nothing here reads files or starts processes, and nothing here imports above the base modules."""
