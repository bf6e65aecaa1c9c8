"""Benchmark prompts: JSON list and JSONL of strings, token ids and chat conversations; synthetic prompts; every
bad file is one error."""

from __future__ import annotations

import json

import pytest

from eaglectl.errors import ConfigError
from tests.helpers import LazyModule

prompts = LazyModule("eaglectl.bench.prompts")


def load(path, num=None, **kw):
    return prompts.load(path, num, vocab_size=kw.pop("vocab_size", 512), target=kw.pop("target", "unused"), **kw)


def test_json_list_of_strings_and_ids(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(["hello", [5, 6, 7]]))
    ps = load(f)
    assert [(p.kind, p.value) for p in ps.prompts] == [("text", "hello"), ("ids", [5, 6, 7])]
    assert not ps.synthetic and ps.source == str(f)


def test_jsonl_and_num_prompts(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('[1, 2, 3]\n\n"two"\n[4]\n')
    ps = load(f, 2)
    assert [p.value for p in ps.prompts] == [[1, 2, 3], "two"]
    ps = load(f, 9)
    assert len(ps.prompts) == 3 and "holds 3" in ps.notes[0]


def test_synthetic_prompts_are_seeded_ids_within_the_vocabulary():
    a, b = prompts.load(None, 5, vocab_size=100, target="t"), prompts.load(None, 5, vocab_size=100, target="t")
    assert a.synthetic and [p.value for p in a.prompts] == [p.value for p in b.prompts]
    assert all(p.kind == "ids" and 16 <= len(p.value) <= 64 and max(p.value) < 100 for p in a.prompts)
    assert len(prompts.load(None, None, vocab_size=None, target="t").prompts) == 16


@pytest.fixture
def chat_target(tmp_path):
    """A local target dir with a word-level tokenizer and a chat template."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "user:", "assistant:", "hi", "there", "\n"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")
    fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
                          "{% if add_generation_prompt %}assistant: {% endif %}")
    d = tmp_path / "target"
    fast.save_pretrained(d)
    return d


def test_chat_rendered_with_the_targets_template(tmp_path, chat_target):
    f = tmp_path / "chat.jsonl"
    f.write_text(json.dumps([{"role": "user", "content": "hi there"}]) + "\n")
    ps = load(f, target=str(chat_target))
    p = ps.prompts[0]
    assert p.kind == "chat" and p.messages == [{"role": "user", "content": "hi there"}]
    assert p.value == [2, 4, 5, 3]  # "user: hi there assistant:"
    assert "rendered with" in ps.notes[0]


def test_chat_without_a_tokenizer_is_one_error(tmp_path):
    pytest.importorskip("transformers")
    f = tmp_path / "chat.json"
    f.write_text(json.dumps([[{"role": "user", "content": "hi"}]]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer to render chat prompts"):
        load(f, target=str(tmp_path / "empty"))


BAD = {
    "not json": (b"[1, 2", "prompts"),
    "empty file": (b"  \n", "no prompts"),
    "empty list": (b"[]", "no prompts"),
    "object": (b'{"a": 1}', "prompt 0 is not"),
    "bare id list": (b"[1, 2]", "is one prompt"),
    "number in list": (b'["a", 2]', "prompt 1 is not"),
    "empty string": (b'[""]', "prompt 0 is not"),
    "negative id": (b"[[1, -2]]", "prompt 0 is not"),
    "bool ids": (b"[[true]]", "prompt 0 is not"),
    "id outside vocab": (b"[[1, 600]]", "outside the target's vocabulary"),
    "bare conversation": (b'[{"role": "user", "content": "x"}]', "is one prompt"),
    "bad message": (b'[[{"role": "user"}]]', "prompt 0 is not"),
    "deep nesting": (b"[" * 200 + b"]" * 200, "nest"),
    "huge integer": (b"[[" + b"9" * 5000 + b"]]", "digits"),
    "bad jsonl line": (b'"a"\n{oops\n', "line 2"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_prompt_files(tmp_path, case):
    raw, expected = BAD[case]
    f = tmp_path / "p.json"
    f.write_bytes(raw)
    with pytest.raises(ConfigError, match=expected):
        load(f)


def test_limits_on_size_and_count(tmp_path, monkeypatch):
    f = tmp_path / "p.jsonl"
    f.write_text('"a"\n' * 50)
    import eaglectl.bench.prompts as mod

    monkeypatch.setattr(mod, "MAX_PROMPTS", 10)
    with pytest.raises(ConfigError, match="more than 10 prompts"):
        load(f)
    monkeypatch.setattr(mod, "MAX_FILE_BYTES", 100)
    with pytest.raises(ConfigError, match="at most 100"):
        load(f)


def test_text_prompts_refused_without_sglangs_tokenizer(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('["hello"]')
    with pytest.raises(ConfigError, match="--skip-tokenizer-init"):
        load(f, skip_tokenizer_init=True)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="regular file"):
        load(fifo)
