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


def measurement(config, bs, tps, outputs, accept=None, speedup=None):
    m = metrics.summarise(config, bs, [record(i, 0.0, 0.1, [0.1], 2, o, accept=accept, verify=None)
                                       for i, o in enumerate(outputs)], 1.0)
    m.tokens_per_s, m.speedup = tps, speedup
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
          measurement("3,1,4", 1, 20, [[1]], speedup=2.0), measurement("3,1,4", 8, 40, [[1]], speedup=1.0),
          measurement("5,4,8", 1, 30, [[1]], speedup=3.0), measurement("5,4,8", 8, 20, [[1]], speedup=0.5),
          measurement("1,1,2", 1, 15, [[1]], speedup=1.5)]  # not measured at batch size 8: not ranked
    best, per_bs, scores = metrics.recommend(ms)
    assert scores == {"3,1,4": pytest.approx(1.4142, abs=1e-4), "5,4,8": pytest.approx(1.2247, abs=1e-4)}
    assert best == "3,1,4" and per_bs == {1: "5,4,8", 8: "baseline"}


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
