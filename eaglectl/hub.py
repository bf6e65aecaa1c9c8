"""Hub id or local path: one rule for every argument that may be either (a drafter, `--target`, `TARGET`); and
fetching a Hub drafter with huggingface_hub.

An argument that names no existing file is a Hugging Face repo id only if nothing about it reads as a local
path: it does not start with `/`, `./`, `../` or `~`, its first component is not an existing directory here,
and it is a valid `namespace/name` repo id. Anything else is "no such file or directory", so a mistyped local
path (`demo/specforgee`, `./targt`, a missing `/x/target`) fails instead of passing through to SGLang as a
download.

A Hub drafter is fetched into the library's own cache (`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and a token
are the library's business, read by it), only the top-level files a drafter is made of, then handled like a
local directory. The cache is a source: nothing is ever written into it but by the library. `inspect` may read
a safetensors repo remotely instead: config.json and the meta file are fetched, the weights' headers read with
range requests (`get_safetensors_metadata`), no weight data downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.errors import CheckpointError
from eaglectl.output import shell_quote  # commands in hints: quoted as the shell reads them back

PATH_PREFIXES = ("/", "./", "../", "~")

# What a drafter is made of (resolve.py's layouts), and nothing else a repo may hold (a target copy, datasets,
# training logs). Top level only: `*` matches `/` in these patterns, so `*/*` keeps sub-folders out.
DRAFTER_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                    "pytorch_model.bin.index.json", "draft_model.pt", "eagle*_meta.pt", "speculative_token_map.pt"]
SUBFOLDERS = ["*/*"]
REPO_TYPE = "model"
META_FILES = ("eagle_meta.pt", "eagle3_meta.pt", "eagle1_meta.pt")  # resolve.META_NAMES, in its order
MAX_META_BYTES = 64 * 1024 * 1024  # a 256k-token vocab's ids and mask are ~2.3 MB
OFFLINE_HINT = "unset HF_HUB_OFFLINE, or download it first: `hf download {repo}{rev}`"
UNREACHABLE_HINT = "check the connection to the Hub (and HF_ENDPOINT), or download it first: `hf download {repo}{rev}`"


def expand_user(source: str | Path, error: type[Exception] = CheckpointError) -> Path:
    """`source` with a leading `~` or `~user` expanded, as the shell would have; `~user` of no such user (or a `~`
    with no home directory to name) is `error` ("no such file or directory"), not pathlib's RuntimeError."""
    try:
        return Path(source).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory."
        head = str(source).split("/", 1)[0]
        who = f"there is no user {head[1:]!r}" if len(head) > 1 else "there is no home directory"
        raise error(f"{source}: no such file or directory ({who}, so {head} names no directory)") from None


def hub_id(source: str) -> str:
    """`source` as a Hub repo id, or a `CheckpointError` saying why it is a missing local path instead.
    Called for an argument that does not exist on disk; never touches the network."""
    if os.path.lexists(os.path.expanduser(source)):
        raise CheckpointError(f"{source}: broken symlink" if os.path.islink(source) else f"{source}: cannot access")
    missing = f"{source}: no such file or directory"
    if source in ("", ".", "..") or source.startswith(PATH_PREFIXES):
        raise CheckpointError(missing)
    first = source.split("/", 1)[0]
    if "/" in source and os.path.isdir(first):
        raise CheckpointError(f"{missing} ({first}/ is a local directory, so this is a path, not a Hugging Face "
                              f"repo id)")
    if "/" in source and (near := _near_local_path(source)) is not None:
        raise CheckpointError(f"{missing} ({first}/ is no directory here; did you mean {near}?)")
    if source.count("/") != 1 or not _valid_repo_id(source):
        raise CheckpointError(f"{missing} (and not a Hugging Face repo id, which reads namespace/name)")
    return source


MAX_NEAR_ENTRIES = 10_000  # directory entries looked at for a near-miss of a path's first component


def _near_local_path(source: str) -> str | None:
    """`source` with its first component replaced by a local directory whose name is a near miss of it (difflib),
    when the rest of the path exists under that directory: `eaglctl-demo/specforge` beside `eaglectl-demo/`. A
    near name alone is no proof (a Hub namespace may resemble a local directory); the whole path is."""
    import difflib
    import itertools

    first, rest = source.split("/", 1)
    try:
        with os.scandir(".") as it:
            names = [e.name for e in itertools.islice(it, MAX_NEAR_ENTRIES) if e.is_dir()]
    except OSError:
        return None
    by_case = [n for n in names if n.casefold() == first.casefold()]  # `DEMO/x` beside `demo/`: no close match by
    for name in [*by_case, *difflib.get_close_matches(first, names, n=3, cutoff=0.75)]:  # difflib's measure
        candidate = f"{name}/{rest}"
        if os.path.exists(candidate):
            return candidate
    return None


def _valid_repo_id(source: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


@dataclass
class HubSource:
    """Where a Hub drafter came from, and the cache directory eaglectl must treat as read-only source."""

    repo_id: str
    revision: str | None  # as asked (None: the default branch)
    commit: str | None  # the commit it resolved to
    snapshot: Path | None  # the cached snapshot directory (None when read remotely)
    cache: Path | None  # the Hub cache root holding it: no output may go inside
    headers_only: bool = False  # weights read remotely as headers; no tensor data here
    offline: bool = False


@dataclass
class RemoteHeaders:
    """A safetensors drafter read remotely: its config and meta fetched, its weights as validated header entries."""

    source: HubSource
    config_path: Path
    meta_path: Path | None
    # shard file name -> its header as the Hub served it (tensor name -> dtype, shape, data_offsets)
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    weight_map: dict[str, str] | None = None  # from the shard index, when there is one
    index_file: str | None = None


def offline() -> bool:
    """The library's own offline switch (`HF_HUB_OFFLINE`, read when it was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _rev(revision: str | None) -> str:
    return f" --revision {shell_quote(revision)}" if revision else ""


def hub_error(repo_id: str, revision: str | None, exc: Exception) -> CheckpointError:
    """One line for anything the Hub or the network answered, naming the repo (and revision)."""
    from huggingface_hub.utils import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{repo_id}" + (f"@{revision}" if revision else "")
    # It was taken for a Hub id as it names no local path: that is said too, unless --revision made it an id.
    path = "" if revision else "; as a path: no such file or directory"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    retry = (OFFLINE_HINT if offline() else UNREACHABLE_HINT).format(repo=shell_quote(repo_id), rev=_rev(revision))
    if type(exc).__name__ == "IncompleteSnapshotError":  # huggingface_hub >= 2: files of the listing missing
        return CheckpointError(f"{what}: the cached snapshot is incomplete and the Hub cannot be asked ({first})",
                               hint=retry)
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and offline():
        return CheckpointError(f"{what}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set{path}",
                               hint=retry)  # offline(): the offline hint
    if isinstance(exc, GatedRepoError):  # a RepositoryNotFoundError subclass: first
        return CheckpointError(f"{what}: gated repo; accept its terms on the Hub and log in",
                               hint="`hf auth login`, or set HF_TOKEN")
    if isinstance(exc, RevisionNotFoundError):
        return CheckpointError(f"{what}: no such revision on the Hub", hint="pass --revision with a branch, tag "
                                                                            "or commit of the repo")
    if isinstance(exc, RepositoryNotFoundError):
        return CheckpointError(f"{what}: no such model repo on the Hub (or it is private){path}",
                               hint="check the id; for a private repo `hf auth login`, or set HF_TOKEN")
    if isinstance(exc, LocalEntryNotFoundError):  # HF_HUB_OFFLINE is not what stopped it: no hint to unset it
        return CheckpointError(f"{what}: cannot reach the Hub and not in the local cache ({first}){path}",
                               hint=retry)
    return CheckpointError(f"{what}: the Hugging Face Hub request failed ({type(exc).__name__}: {first}){path}")


def _hub_failure(exc: Exception) -> bool:
    """Whether an exception is the Hub's or the network's (mapped to one line) rather than a bug (traceback)."""
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled)):
        return True
    # requests (huggingface_hub < 1) or httpx (>= 1) errors when the network fails outside a download
    return type(exc).__module__.split(".")[0] in ("requests", "urllib3", "httpx", "httpx2", "huggingface_hub")


def _cache_may_answer(exc: Exception) -> bool:
    """Whether huggingface_hub's own download (`snapshot_download`, what export, token-map and serve use) would
    look in the cache after this failure of a Hub request: no connection, a timeout, offline mode, and any HTTP
    error but an unknown revision (a server error, a rate limit, a proxy's or an expired token's refusal, a repo
    made private or deleted since it was cached). A proxy that cannot be reached is raised by it, as here."""
    from huggingface_hub.utils import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

    if isinstance(exc, OfflineModeIsEnabled):
        return True
    if isinstance(exc, HfHubHTTPError):
        return not isinstance(exc, RevisionNotFoundError)
    if type(exc).__module__.split(".")[0] not in ("requests", "urllib3", "httpx", "httpx2"):
        return False
    return any(c.__name__ in ("ConnectError", "TimeoutException", "ConnectionError", "Timeout", "ProtocolError",
                              "NetworkError", "RemoteProtocolError") for c in type(exc).__mro__)


def _source_from_snapshot(repo_id: str, revision: str | None, snapshot: Path) -> HubSource:
    # <cache>/models--org--name/snapshots/<commit>: the commit is the folder's name
    in_cache = snapshot.parent.name == "snapshots"
    return HubSource(repo_id, revision, snapshot.name if in_cache else None, snapshot,
                     snapshot.parents[2] if in_cache else snapshot, offline=offline())


def fetch_drafter(repo_id: str, revision: str | None) -> HubSource:
    """Download (or find in the cache, offline) only the files a drafter is made of."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision, allow_patterns=DRAFTER_PATTERNS,
                                 ignore_patterns=SUBFOLDERS)
    except Exception as exc:
        if _hub_failure(exc):
            raise hub_error(repo_id, revision, exc) from exc
        raise
    src = _source_from_snapshot(repo_id, revision, Path(path))
    assert src.snapshot is not None
    has_weights = any(src.snapshot.glob("*.safetensors")) or any(src.snapshot.glob("*.bin")) or (
        src.snapshot / "draft_model.pt").exists()
    if not has_weights:
        found = sorted(p.name for p in src.snapshot.iterdir())[:6]
        if src.offline:  # an earlier headers-only inspect cached config.json alone
            raise CheckpointError(f"{repo_id}: the cached snapshot {src.commit} holds no weights (found "
                                  f"{', '.join(found) or 'nothing'}), and HF_HUB_OFFLINE is set",
                                  hint=OFFLINE_HINT.format(repo=shell_quote(repo_id), rev=_rev(revision)))
        # the download falls back on the cache when the Hub cannot be asked, without saying so: what was read may
        # be a snapshot an earlier headers-only inspect left (config.json alone), not the repo
        raise CheckpointError(f"{repo_id}: no drafter weights at the top of the repo or in its cached snapshot "
                              f"{src.commit or src.snapshot} (found {', '.join(found) or 'nothing'}; expected "
                              f"model.safetensors, pytorch_model.bin or draft_model.pt beside config.json)",
                              hint="if the Hub could not be reached, the cache holds only what an earlier inspect "
                                   "fetched (the config): " + UNREACHABLE_HINT.format(repo=shell_quote(repo_id),
                                                                                       rev=_rev(revision)))
    return src


def drafter_headers(repo_id: str, revision: str | None, *, max_shards: int) -> RemoteHeaders | None:
    """The repo's config, meta and safetensors headers without its weight data, or None when that cannot be
    had that way (offline: the cache is the only source; pickled weights; safetensors shards without an index),
    and the caller downloads instead."""
    if offline():
        return None
    from huggingface_hub import HfApi, get_safetensors_metadata, hf_hub_download

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        commit = info.sha
        files = {s.rfilename: s.size for s in (info.siblings or []) if "/" not in s.rfilename}
        if "config.json" not in files:
            raise CheckpointError(f"{repo_id}: no config.json at the top of the repo (found "
                                  f"{', '.join(sorted(files)[:6]) or 'nothing'})")
        shards = [f for f in files if f.endswith(".safetensors")]
        if "draft_model.pt" in files or not shards:
            return None  # a pickle: only the downloaded file can be read (weights_only, mmap)
        if "model.safetensors" not in files and "model.safetensors.index.json" not in files:
            return None  # the library reads these two layouts only
        if len(shards) > max_shards:
            raise CheckpointError(f"{repo_id}: {len(shards)} safetensors files (at most {max_shards})")
        src = HubSource(repo_id, revision, commit, None, None, headers_only=True)
        pinned = commit or revision  # every request reads the same commit
        config = Path(hf_hub_download(repo_id, "config.json", repo_type=REPO_TYPE, revision=pinned))
        meta_name = next((m for m in META_FILES if m in files), None)
        meta = None
        if meta_name is not None:
            size = files[meta_name]
            if size is not None and size > MAX_META_BYTES:
                raise CheckpointError(f"{repo_id}: {meta_name} is {size} bytes (a vocab meta file is a few MB; at "
                                      f"most {MAX_META_BYTES})")
            meta = Path(hf_hub_download(repo_id, meta_name, repo_type=REPO_TYPE, revision=pinned))
        st = get_safetensors_metadata(repo_id, repo_type=REPO_TYPE, revision=pinned)
    except CheckpointError:
        raise
    except (TypeError, KeyError) as exc:  # a header whose entries the library's parser cannot take
        raise CheckpointError(f"{repo_id}: malformed safetensors header on the Hub ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
    except Exception as exc:
        if _cache_may_answer(exc):
            return None  # the download then reads the cached snapshot, or fails as export's would
        if _hub_failure(exc):
            raise hub_error(repo_id, revision, exc) from exc
        raise
    headers = {name: {t: {"dtype": ti.dtype, "shape": ti.shape, "data_offsets": ti.data_offsets}
                      for t, ti in fm.tensors.items()} for name, fm in st.files_metadata.items()}
    return RemoteHeaders(src, config, meta, headers, dict(st.weight_map) if st.sharded else None,
                         "model.safetensors.index.json" if st.sharded else None)


def cached_target_config(repo_id: str) -> tuple[Path | None, str]:
    """A Hub target's config.json from the local cache (never the network), and a sentence saying where it came
    from or why it is not there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", repo_type=REPO_TYPE)
    if isinstance(found, str):
        commit = Path(found).parent.name
        return Path(found), f"target {repo_id}: config.json read from the local Hugging Face cache (commit {commit})"
    why = "the cached snapshot has none" if found is not None else "not in the local Hugging Face cache"
    return None, (f"target {repo_id}: config.json {why}, so the checks against the target were skipped "
                  f"(`hf download {shell_quote(repo_id)} config.json` lets eaglectl run them)")
