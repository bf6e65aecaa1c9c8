"""Measurement numbers from request records with known timings and counters, agreement, findings and the
recommendation."""

from __future__ import annotations

import pytest

from tests.helpers import LazyModule

client = LazyModule("eaglectl.bench.client")
metrics = LazyModule("eaglectl.bench.metrics")


def record(index, start, ttft, itl, tokens, out, *, accept=None, verify=None, hist=None, error=None):
    return client.RequestRecord(index=index, start=start, end=start + ttft + sum(itl), ttft_s=ttft, itl_s=itl,
                                output_ids=out, completion_tokens=tokens, spec_accept_length=accept,
                                spec_verify_ct=verify, spec_accept_histogram=hist, error=error)


def test_numbers_from_known_timings():
    # two requests of 4 tokens: TTFT 0.1 s and 0.3 s, inter-token 0.05 s and 0.1 s; the batch took 0.6 s
    recs = [record(0, 0.0, 0.1, [0.05] * 3, 4, [1, 2, 3, 4], accept=2.0, verify=2, hist=[0, 2]),
            record(1, 0.0, 0.3, [0.1] * 3, 4, [5, 6, 7, 8], accept=4.0, verify=1, hist=[0, 0, 0, 1])]
    m = metrics.summarise("3,1,4", 2, recs, 0.6)
    assert m.output_tokens == 8 and m.requests == 2
    assert m.tokens_per_s == pytest.approx(8 / 0.6, abs=1e-3)
    assert m.per_request_tokens_per_s == pytest.approx((4 / 0.25 + 4 / 0.6) / 2, abs=1e-3)
    assert m.ttft_p50_ms == pytest.approx(200.0) and m.ttft_p99_ms == pytest.approx(298.0)
    assert m.itl_p50_ms == pytest.approx(75.0) and m.itl_p99_ms == pytest.approx(100.0)
    assert m.accept_length_mean == pytest.approx(8 / 3, abs=1e-4)  # tokens over verify rounds, all requests
    assert m.accept_histogram == [0, 2, 0, 1]
    # per verify round: accept lengths 2, 2, 4 -> p50 2, p90 3.6
    assert (m.accept_length_p50, m.accept_length_p90, m.accept_length_source) == (2.0, 3.6, "verify rounds")
    assert m.per_request_accept_length == [2.0, 4.0] and m.errors == []


def test_accept_percentiles_from_requests_without_histogram():
    recs = [record(i, 0.0, 0.1, [0.1], 2, [i], accept=a, verify=None) for i, a in enumerate([1.0, 2.0, 3.0, 4.0])]
    m = metrics.summarise("3,1,4", 1, recs, 1.0)
    assert m.accept_length_mean == 2.5 and m.accept_histogram is None
    assert (m.accept_length_p50, m.accept_length_p90, m.accept_length_source) == (2.5, 3.7, "requests")


def test_baseline_has_no_accept_length():
    m = metrics.summarise("baseline", 1, [record(0, 0.0, 0.1, [0.1], 2, [1, 2])], 0.2)
    assert m.accept_length_mean is None and m.accept_length_source is None


def test_failed_requests_are_errors_not_tokens():
    recs = [record(0, 0.0, 0.1, [0.1], 2, [1, 2]), record(1, 0.0, 0.0, [], 0, None, error="HTTP 500: boom")]
    m = metrics.summarise("baseline", 2, recs, 0.2)
    assert m.output_tokens == 2 and m.errors == ["prompt 1: HTTP 500: boom"]


@pytest.mark.parametrize(("a", "b", "pos"), [([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 9, 3], 1),
                                            ([1, 2], [1, 2, 3], 2), (None, [1], 0), ("abc", "abd", 2)])
def test_first_divergence(a, b, pos):
    assert metrics.first_divergence(a, b) == pos


def measurement(config, bs, tps, outputs, accept=None, speedup=None, verdict=None):
    m = metrics.summarise(config, bs, [record(i, 0.0, 0.1, [0.1], 2, o, accept=accept, verify=None)
                                       for i, o in enumerate(outputs)], 1.0)
    m.tokens_per_s, m.speedup, m.beats_baseline = tps, speedup, verdict
    return m


def test_agreement_and_early_divergence_finding():
    base = measurement("baseline", 1, 10, [[1, 2, 3, 4]] * 4)
    spec = measurement("3,1,4", 1, 20, [[1, 2, 3, 4], [1, 9, 9, 9], [7, 7, 7, 7], [1, 2, 3, 9]], accept=3.0)
    a = metrics.agreement(spec, base)
    assert (a.compared, a.exact, a.exact_fraction) == (4, 1, 0.25)
    assert a.first_divergence == [None, 1, 0, 3] and a.median_first_divergence == 1.0
    spec.agreement = a
    found = metrics.findings([base, spec], greedy=True, max_new_tokens=4, synthetic=False)
    assert [f.code for f in found] == ["early-divergence"]
    assert "3 of 4" in found[0].message and found[0].causes
    assert metrics.findings([base, spec], greedy=False, max_new_tokens=4, synthetic=False) == []


def test_accept_length_one_finding_names_causes():
    spec = measurement("3,1,4", 1, 5, [[1]], accept=1.0, speedup=0.5)
    found = {f.code: f for f in metrics.findings([spec], greedy=True, max_new_tokens=64, synthetic=True)}
    assert set(found) == {"accept-length-one", "no-speedup", "synthetic-prompts"}
    causes = " ".join(found["accept-length-one"].causes)
    assert "wrong algorithm" in causes and "stale layers" in causes and "vocab mapping" in causes


def test_recommendation_geometric_mean_over_batch_sizes():
    ms = [measurement("baseline", 1, 10, [[1]]), measurement("baseline", 8, 40, [[1]]),
          measurement("3,1,4", 1, 20, [[1]], speedup=2.0, verdict="yes"),
          measurement("3,1,4", 8, 40, [[1]], speedup=1.0, verdict="uncertain"),
          measurement("5,4,8", 1, 30, [[1]], speedup=3.0, verdict="yes"),
          measurement("5,4,8", 8, 20, [[1]], speedup=0.5, verdict="no"),
          measurement("1,1,2", 1, 15, [[1]], speedup=1.5, verdict="yes")]  # not measured at batch size 8: not ranked
    best, per_bs, scores, pays = metrics.recommend(ms)
    assert scores == {"3,1,4": pytest.approx(1.4142, abs=1e-4), "5,4,8": pytest.approx(1.2247, abs=1e-4)}
    assert best == "3,1,4" and per_bs == {1: "5,4,8", 8: "baseline"}
    assert pays == {1: "yes", 8: "uncertain"}


def test_a_spread_reaching_one_is_no_win_and_loses_to_a_sure_one():
    """5,4,8 has the higher median speedup, but its spread reaches 1.0 at batch size 8: the sure win is
    recommended, and 5,4,8 is not the best at batch size 8 (the baseline is: no configuration surely beats it)."""
    ms = [measurement("baseline", 1, 10, [[1]]), measurement("baseline", 8, 40, [[1]]),
          measurement("3,1,4", 1, 15, [[1]], speedup=1.5, verdict="yes"),
          measurement("3,1,4", 8, 30, [[1]], speedup=0.75, verdict="no"),
          measurement("5,4,8", 1, 30, [[1]], speedup=3.0, verdict="yes"),
          measurement("5,4,8", 8, 48, [[1]], speedup=1.2, verdict="uncertain"),
          measurement("1,1,2", 1, 12, [[1]], speedup=1.2, verdict="yes"),
          measurement("1,1,2", 8, 44, [[1]], speedup=1.1, verdict="yes")]
    best, per_bs, scores, pays = metrics.recommend(ms)
    assert scores["5,4,8"] > scores["1,1,2"] and best == "1,1,2"
    assert per_bs == {1: "5,4,8", 8: "1,1,2"} and pays == {1: "yes", 8: "yes"}
    # without the sure win at 8, speculation at 8 is uncertain and the baseline stays the best there
    best, per_bs, _, pays = metrics.recommend(ms[:-2])
    assert best == "5,4,8" and per_bs[8] == "baseline" and pays == {1: "yes", 8: "uncertain"}
    _, _, _, pays = metrics.recommend(ms[:4])
    assert pays == {1: "yes", 8: "no"}


def repeat(tokens, wall, n=2):
    """One repeat of `n` passes, each of one request of `tokens` // n tokens taking wall / n seconds."""
    per = tokens // n
    return [([record(0, 0.0, wall / n, [], per, [1] * per)], wall / n) for _ in range(n)]


def test_spread_over_repeats_and_the_verdict():
    base = metrics.summarise_repeats("baseline", 1, [repeat(100, 1.0), repeat(100, 1.25), repeat(100, 0.8)])
    assert base.repeats == 3 and base.passes == 6 and base.output_tokens == 300
    assert base.repeat_tokens == [100, 100, 100] and base.repeat_wall_s == [1.0, 1.25, 0.8]
    assert base.repeat_tokens_per_s == [100.0, 80.0, 125.0]
    assert (base.tokens_per_s_min, base.tokens_per_s, base.tokens_per_s_max) == (80.0, 100.0, 125.0)
    assert base.wall_s == pytest.approx(3.05) and len(base.outputs) == 1  # the first pass's outputs
    sure = metrics.summarise_repeats("3,1,4", 1, [repeat(300, 2.0), repeat(300, 1.5), repeat(300, 2.2)])
    assert sure.tokens_per_s == 150.0
    lo, mid, hi, verdict = metrics.spread(sure, base)
    # slowest repeat over the baseline's fastest, medians, fastest over the baseline's slowest
    assert (lo, mid, hi) == (pytest.approx(round(300 / 2.2 / 125, 4)), 1.5, 2.5) and verdict == "yes"
    close = metrics.summarise_repeats("3,1,4", 1, [repeat(110, 1.0), repeat(110, 1.0), repeat(90, 1.0)])
    assert metrics.spread(close, base)[1:] == (1.1, 1.375, "uncertain")  # median above 1.0, the spread reaches it
    slow = metrics.summarise_repeats("3,1,4", 1, [repeat(70, 1.0), repeat(60, 1.0)])
    assert metrics.spread(slow, base)[3] == "no"


def test_percentile_matches_linear_interpolation():
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([3.0], 99) == 3.0
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)


def test_request_mean_is_serve_smokes_figure_beside_the_token_weighted_mean():
    """Two requests: 10 tokens in 2 rounds (SGLang says 5.0) and 90 tokens in 60 rounds (1.5). The token-weighted
    mean is 100 / 62; the per-request mean, which `serve --smoke` reports, is (5.0 + 1.5) / 2."""
    from eaglectl.bench.client import RequestRecord
    from eaglectl.bench.metrics import summarise

    records = [RequestRecord(0, 0.0, 1.0, completion_tokens=10, spec_accept_length=5.0, spec_verify_ct=2),
               RequestRecord(1, 0.0, 1.0, completion_tokens=90, spec_accept_length=1.5, spec_verify_ct=60)]
    m = summarise("3,1,4", 1, records, 1.0)
    assert m.accept_length_mean == round(100 / 62, 4)
    assert m.accept_length_request_mean == 3.25
