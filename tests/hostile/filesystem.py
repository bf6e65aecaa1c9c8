"""Symlink loops, special files, non-checkpoint paths, unreadable files, hostile names."""

from __future__ import annotations

import shutil

from tests.hostile.core import COMMANDS, _pt, _st, case, copy_base


# --- symlinks, special files -------------------------------------------------------------------------
@case("dir-symlink-loop", "Too many levels of symbolic links")
def _(tmp, bases):
    ck = tmp / "loop"
    ck.symlink_to(ck)
    return ck


@case("model-dir-symlink-loop", "model: symlink loop")
def _(tmp, bases):
    ck = copy_base(bases, "consolidated", tmp, "epoch_0_step_100")
    shutil.rmtree(ck / "model")
    (ck / "model").symlink_to(ck / "model")
    return ck


@case("config-symlink-loop", "config.json: symlink loop")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    (ck / "config.json").unlink()
    (ck / "config.json").symlink_to("config.json")
    return ck


@case("weights-symlink-loop", "model.safetensors: symlink loop")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    f.unlink()
    f.symlink_to("model.safetensors")
    return ck


@case("weights-broken-symlink", "model.safetensors: broken symlink")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    f.unlink()
    f.symlink_to(tmp / "gone" / "model.safetensors")
    return ck


@case("meta-broken-symlink", "eagle3_meta.pt: broken symlink")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    (ck / "eagle3_meta.pt").unlink()
    (ck / "eagle3_meta.pt").symlink_to(tmp / "gone.pt")
    return ck


@case("model-symlink-loop-beside-weights", "model: symlink loop")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    (ck / "model").symlink_to("model")
    return ck


@case("output-is-a-file", "exists and is not a directory", commands=("export",))
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    shutil.rmtree(ck / "sglang")
    (ck / "sglang").write_text("my notes, not an export\n")
    return ck


# --- paths that are not checkpoints --------------------------------------------------------------------
@case("empty-dir", "empty directory")
def _(tmp, bases):
    (tmp / "empty").mkdir()
    return tmp / "empty"


@case("a-plain-file", "expected a checkpoint directory, got a file")
def _(tmp, bases):
    (tmp / "notes.txt").write_text("hello\n")
    return tmp / "notes.txt"


@case("junk-dir", "not a drafter checkpoint (found a.txt, b.json")
def _(tmp, bases):
    (tmp / "junk").mkdir()
    (tmp / "junk" / "a.txt").write_text("x")
    (tmp / "junk" / "b.json").write_text("{}")
    return tmp / "junk"


@case("missing-local-path", "no such file or directory")
def _(tmp, bases):
    return tmp / "does" / "not" / "exist"


# --- unreadable (needs a run without CAP_DAC_OVERRIDE when root) -------------------------------------
@case("unreadable-config", "cannot read config (Permission denied)", unreadable="ckpt/config.json")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    (ck / "config.json").chmod(0)
    return ck


@case("unreadable-weights", "model.safetensors: cannot read (Permission denied)",
      unreadable="ckpt/model.safetensors")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    f.chmod(0)
    return ck


@case("unreadable-meta", "eagle3_meta.pt: cannot read (Permission denied)", unreadable="ckpt/eagle3_meta.pt")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    (ck / "eagle3_meta.pt").chmod(0)
    return ck


@case("unreadable-dir", "directory is not readable", unreadable="ckpt")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    ck.chmod(0)
    return ck


@case("unreadable-model-subdir", "model: directory is not readable", unreadable="epoch_0_step_100/model")
def _(tmp, bases):
    ck = copy_base(bases, "consolidated", tmp, "epoch_0_step_100")
    (ck / "model").chmod(0)
    return ck


@case("read-only-output-dir", "not writable", commands=("export", "token-map"), unreadable="ckpt")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    shutil.rmtree(ck / "sglang")
    (ck / "speculative_token_map.pt").unlink()
    ck.chmod(0o555)
    return ck


# --- hostile names that must work ------------------------------------------------------------------------
@case("path-with-spaces", "", succeeds=COMMANDS)
def _(tmp, bases):
    (tmp / "my runs" / "draft v2 (final)").mkdir(parents=True)
    return copy_base(bases, "consolidated", tmp / "my runs" / "draft v2 (final)", "epoch_0_step_100")


@case("path-non-ascii", "", succeeds=COMMANDS)
def _(tmp, bases):
    (tmp / "чекпойнты" / "模型 ✓").mkdir(parents=True)
    return copy_base(bases, "pt", tmp / "чекпойнты" / "模型 ✓", "drafter ünïcode")


@case("path-shell-metacharacters", "", succeeds=COMMANDS)
def _(tmp, bases):
    return copy_base(bases, "sharded", tmp, "it's $HOME; `rm -rf` [x] *")
