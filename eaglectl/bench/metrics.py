"""From request records to the numbers of one measurement (configuration x batch size), the agreement of greedy
outputs with the baseline's, and what the numbers say (findings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eaglectl.bench.client import RequestRecord


@dataclass
class Agreement:
    """Speculative outputs against the baseline's, prompt by prompt (greedy only)."""

    compared: int
    exact: int
    exact_fraction: float
    first_divergence: list[int | None]  # per prompt: the first differing position, None when equal
    median_first_divergence: float | None  # over the prompts that diverge


@dataclass
class Measurement:
    config: str  # "baseline" or "steps,topk,draft_tokens"
    batch_size: int
    requests: int
    output_tokens: int
    wall_s: float
    tokens_per_s: float  # all requests' output tokens / wall time
    per_request_tokens_per_s: float  # mean of each request's tokens / its latency
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    accept_length_mean: float | None  # output tokens / verify rounds, over every request
    # The mean of SGLang's per-request spec_accept_length: the figure `serve --smoke` reports. Short requests
    # weigh as much as long ones, so it can differ from the token-weighted mean above.
    accept_length_request_mean: float | None
    accept_length_p50: float | None
    accept_length_p90: float | None
    accept_length_source: str | None  # "verify steps (histogram)" | "requests"
    accept_histogram: list[int] | None  # [n] = verify rounds that accepted n drafted tokens, summed
    per_request_accept_length: list[float | None]
    errors: list[str]
    # The outputs (token ids, or text), for the agreement check: in the results file, not in --json.
    outputs: list[list[int] | str | None] = field(repr=False, metadata={"internal": True})
    speedup: float | None = None  # tokens_per_s / the baseline's at this batch size (medians over repeats)
    agreement: Agreement | None = None
    # The measured window: `repeats` repeats, each of whole passes over the prompts until both minimums (seconds,
    # tokens) were met; one warm-up pass before them is not counted. `wall_s` and `output_tokens` above are the
    # totals over every repeat, `tokens_per_s` the median of the repeats' own tokens/s.
    repeats: int = 1
    passes: int = 1
    repeat_wall_s: list[float] = field(default_factory=list)
    repeat_tokens: list[int] = field(default_factory=list)
    repeat_tokens_per_s: list[float] = field(default_factory=list)
    tokens_per_s_min: float | None = None
    tokens_per_s_max: float | None = None
    # The spread of the speedup (see `spread`): the slowest repeat over the baseline's fastest, the best over its
    # slowest; "yes" / "no" when the whole spread is above / below 1.0, "uncertain" when it reaches 1.0.
    speedup_min: float | None = None
    speedup_max: float | None = None
    beats_baseline: str | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def _r(v: float | None, n: int = 4) -> float | None:
    return None if v is None else round(v, n)


def histogram_percentile(hist: list[int], q: float) -> float | None:
    """Percentile of the accept length per verify round (n drafted tokens accepted -> n + 1 tokens)."""
    values: list[float] = []
    for n, count in enumerate(hist):
        values.extend([float(n + 1)] * count)
    return percentile(values, q)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(config: str, batch_size: int, records: list[RequestRecord], wall_s: float) -> Measurement:
    ok = [r for r in records if r.error is None]
    tokens = sum(r.completion_tokens for r in ok)
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    itls = [x for r in ok for x in r.itl_s]
    verify = [r.spec_verify_ct for r in ok if r.spec_verify_ct]
    accepts = [r.spec_accept_length for r in ok]
    mean = None
    if verify and len(verify) == len(ok):
        mean = sum(r.completion_tokens for r in ok) / sum(verify)
    elif any(a is not None for a in accepts):
        vals = [a for a in accepts if a is not None]
        mean = sum(vals) / len(vals)
    hists = [r.spec_accept_histogram for r in ok if r.spec_accept_histogram]
    hist: list[int] | None = None
    if hists:
        hist = [0] * max(len(h) for h in hists)
        for h in hists:
            for n, count in enumerate(h):
                hist[n] += count
        source: str | None = "verify rounds"
        p50, p90 = histogram_percentile(hist, 50), histogram_percentile(hist, 90)
    else:
        vals = [a for a in accepts if a is not None]
        p50, p90, source = percentile(vals, 50), percentile(vals, 90), "requests" if vals else None
    per_req = [r.completion_tokens / r.latency_s for r in ok if r.latency_s > 0]
    return Measurement(
        config=config, batch_size=batch_size, requests=len(records), output_tokens=tokens, wall_s=round(wall_s, 4),
        tokens_per_s=round(tokens / wall_s, 3) if wall_s > 0 else 0.0,
        per_request_tokens_per_s=round(sum(per_req) / len(per_req), 3) if per_req else 0.0,
        ttft_p50_ms=_ms(percentile(ttfts, 50)), ttft_p99_ms=_ms(percentile(ttfts, 99)),
        itl_p50_ms=_ms(percentile(itls, 50)), itl_p99_ms=_ms(percentile(itls, 99)),
        accept_length_mean=_r(mean), accept_length_request_mean=_r(_mean([a for a in accepts if a is not None])),
        accept_length_p50=_r(p50), accept_length_p90=_r(p90),
        accept_length_source=source if mean is not None else None, accept_histogram=hist,
        per_request_accept_length=accepts, errors=[f"prompt {r.index}: {r.error}" for r in records if r.error],
        outputs=[r.output_ids if r.output_ids is not None else r.text for r in records])


def summarise_repeats(config: str, batch_size: int,
                      repeats: list[list[tuple[list[RequestRecord], float]]]) -> Measurement:
    """One measurement from `repeats` repeats of (records, wall seconds) passes: latencies and accept lengths over
    every request, tokens/s per repeat (its tokens over its summed pass walls) with the median as the figure,
    the outputs of the first pass (the agreement check compares one answer per prompt)."""
    records = [r for rep in repeats for recs, _ in rep for r in recs]
    wall = sum(w for rep in repeats for _, w in rep)
    m = summarise(config, batch_size, records, wall)
    m.outputs = summarise(config, batch_size, repeats[0][0][0], 1.0).outputs if repeats and repeats[0] else []
    m.repeats, m.passes = len(repeats), sum(len(rep) for rep in repeats)
    m.repeat_wall_s = [round(sum(w for _, w in rep), 4) for rep in repeats]
    m.repeat_tokens = [sum(r.completion_tokens for recs, _ in rep for r in recs if r.error is None) for rep in repeats]
    m.repeat_tokens_per_s = [round(t / w, 3) if w > 0 else 0.0 for t, w in zip(m.repeat_tokens, m.repeat_wall_s,
                                                                                strict=True)]
    if m.repeat_tokens_per_s:
        m.tokens_per_s = round(median(m.repeat_tokens_per_s), 3)
        m.tokens_per_s_min, m.tokens_per_s_max = min(m.repeat_tokens_per_s), max(m.repeat_tokens_per_s)
    return m


def median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def spread(spec: Measurement, baseline: Measurement) -> tuple[float | None, float | None, float | None, str | None]:
    """The speedup of `spec` over `baseline` at one batch size, and how sure it is: (min, median, max, verdict).

    The baseline ran on another server at another time, so repeats are not paired by index: the median is the
    ratio of the medians, the min the configuration's slowest repeat over the baseline's fastest, the max its
    fastest over the baseline's slowest. Verdict: "yes" when the min is above 1.0 (every repeat beat every repeat
    of the baseline), "no" when the max is below 1.0, "uncertain" when the spread reaches 1.0."""
    lo_s, hi_s = spec.tokens_per_s_min, spec.tokens_per_s_max
    lo_b, hi_b = baseline.tokens_per_s_min, baseline.tokens_per_s_max
    if lo_s is None or hi_s is None:
        lo_s = hi_s = spec.tokens_per_s
    if lo_b is None or hi_b is None:
        lo_b = hi_b = baseline.tokens_per_s
    if baseline.tokens_per_s <= 0 or lo_b <= 0:
        return None, None, None, None
    mid = spec.tokens_per_s / baseline.tokens_per_s
    lo, hi = lo_s / hi_b, hi_s / lo_b
    verdict = "yes" if lo > 1.0 else "no" if hi < 1.0 else "uncertain"
    return round(lo, 4), round(mid, 4), round(hi, 4), verdict


def first_divergence(a: list[int] | str | None, b: list[int] | str | None) -> int | None:
    """The first position where two outputs differ (the shorter length when one is a prefix), None if equal."""
    if a == b:
        return None
    if a is None or b is None or type(a) is not type(b):
        return 0
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def agreement(spec: Measurement, baseline: Measurement) -> Agreement:
    div = [first_divergence(s, b) for s, b in zip(spec.outputs, baseline.outputs, strict=False)]
    diverged = sorted(d for d in div if d is not None)
    exact = sum(d is None for d in div)
    mid = None
    if diverged:
        m = len(diverged) // 2
        mid = float(diverged[m]) if len(diverged) % 2 else (diverged[m - 1] + diverged[m]) / 2
    return Agreement(compared=len(div), exact=exact, exact_fraction=round(exact / len(div), 4) if div else 0.0,
                     first_divergence=div, median_first_divergence=mid)


@dataclass
class Finding:
    code: str
    severity: str  # "warning" | "info"
    message: str
    causes: list[str] = field(default_factory=list)


ACCEPT_ONE = 1.1  # an accept length at or below this: the drafter's tokens are (almost) never accepted
ACCEPT_ONE_CAUSES = [
    "wrong algorithm: an EAGLE-3 head served as EAGLE (or the reverse) runs, but every draft is rejected; "
    "check `eaglectl inspect` and do not override --speculative-algorithm",
    "stale layers: the head was trained against another target (or another revision of it), so its hidden-state "
    "inputs mean something else; bench it with the target it was trained for",
    "vocab mapping: a wrong or missing d2t / token map turns correct draft ids into other tokens; "
    "`eaglectl inspect --target` checks the mapping",
    "prompts far from the training data (the synthetic prompts are): try --prompts with real traffic",
]
EARLY_DIVERGENCE_CAUSES = [
    "speculative decoding verifies every token with the target, so greedy output should equal the plain "
    "target's; late divergence is bf16 noise between the verify and decode kernels, early divergence on most "
    "prompts is not",
    "an attention backend or page size that mishandles the draft tree (topk > 1): retry the config with "
    "`-- --attention-backend triton` or topk 1",
    "the baseline and speculative servers ran with different flags (dtype, quantization, a --json-model-override)",
]


def findings(measurements: list[Measurement], *, greedy: bool, max_new_tokens: int,
             synthetic: bool) -> list[Finding]:
    out: list[Finding] = []
    by_config: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.config != "baseline":
            by_config.setdefault(m.config, []).append(m)
    for config, ms in by_config.items():
        accepts = [m.accept_length_mean for m in ms if m.accept_length_mean is not None]
        if accepts and max(accepts) <= ACCEPT_ONE:
            out.append(Finding("accept-length-one", "warning",
                               f"config {config}: accept length {max(accepts):.2f}: the target rejects almost every "
                               f"drafted token, so speculation only adds work", ACCEPT_ONE_CAUSES))
        if greedy:
            early = max(4, max_new_tokens // 4)
            for m in ms:
                a = m.agreement
                if a is None or a.compared == 0:
                    continue
                early_prompts = sum(d is not None and d < early for d in a.first_divergence)
                if early_prompts * 2 > a.compared:
                    out.append(Finding("early-divergence", "warning",
                                       f"config {config}, batch size {m.batch_size}: {early_prompts} of {a.compared} "
                                       f"greedy outputs differ from the baseline's before token {early} (median "
                                       f"first divergence {a.median_first_divergence})", EARLY_DIVERGENCE_CAUSES))
                    break
    speedups = [m.speedup for ms in by_config.values() for m in ms if m.speedup is not None]
    if speedups and max(speedups) < 1.0:
        out.append(Finding("no-speedup", "info",
                           f"no configuration beat the baseline (best speedup {max(speedups):.2f}x): at these batch "
                           f"sizes serve the target without speculation, or train a better drafter"))
    if synthetic:
        from eaglectl.bench.prompts import SYNTHETIC_WARNING

        out.append(Finding("synthetic-prompts", "warning", SYNTHETIC_WARNING))
    return out


def recommend(measurements: list[Measurement]) -> tuple[str | None, dict[int, str], dict[str, Any], dict[int, str]]:
    """The best configuration overall, the best per batch size, the scores and, per batch size, whether
    speculation pays there.

    Scores: the geometric-mean (median) speedup over the batch sizes the baseline was measured at, for the
    configurations measured at all of them. The best overall is the highest-scoring one that beats the baseline
    (verdict "yes") at every batch size, else the highest-scoring one (whose verdicts then say it is no win).
    Best per batch size: the fastest (median tokens/s) configuration whose whole speedup spread is above 1.0,
    else the baseline: a configuration whose spread reaches 1.0 is not called a win. Pays: "yes" when some
    configuration beats the baseline there, "no" when every one is slower, "uncertain" otherwise."""
    import math

    sizes = sorted({m.batch_size for m in measurements if m.config == "baseline"})
    best_per_bs: dict[int, str] = {}
    pays: dict[int, str] = {}
    for bs in sorted({m.batch_size for m in measurements}):
        ms = [m for m in measurements if m.batch_size == bs and m.output_tokens > 0 and not m.errors]
        spec = [m for m in ms if m.config != "baseline"]
        wins = [m for m in spec if m.beats_baseline == "yes"]
        if wins:
            best_per_bs[bs] = max(wins, key=lambda m: m.tokens_per_s).config
        elif any(m.config == "baseline" for m in ms):
            best_per_bs[bs] = "baseline"
        elif ms:
            best_per_bs[bs] = max(ms, key=lambda m: m.tokens_per_s).config
        verdicts = [m.beats_baseline for m in spec if m.beats_baseline is not None]
        if verdicts:
            pays[bs] = "yes" if "yes" in verdicts else "no" if set(verdicts) == {"no"} else "uncertain"
    scores: dict[str, Any] = {}
    all_yes: dict[str, bool] = {}
    for config in dict.fromkeys(m.config for m in measurements if m.config != "baseline"):
        by_size = {m.batch_size: m for m in measurements if m.config == config and m.speedup and not m.errors}
        if sizes and set(by_size) >= set(sizes):
            scores[config] = round(math.exp(sum(math.log(by_size[b].speedup or 1.0) for b in sizes) / len(sizes)), 4)
            all_yes[config] = all(by_size[b].beats_baseline == "yes" for b in sizes)
    best = max(scores, key=lambda c: (all_yes[c], scores[c])) if scores else None
    return best, best_per_bs, scores, pays
