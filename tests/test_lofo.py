import numpy as np
import pytest

from deepfake_core.train.lofo import (AGGREGATIONS, Sample, ShipRule, aggregate, balanced_indices,
                                      balanced_threshold, family_weights, fit_temperature, lofo_split, real_fold,
                                      ship_decision, video_logits)

FAMILIES = ["A", "B", "C", "SBI"]


def _samples():
    out = []
    for fam in ("A", "B", "C"):
        for v in range(4):
            out += [Sample(fam, f"{fam}-src{v}")] * 3  # 3 crops per video
    for p in range(30):
        out += [Sample("real", f"person{p}")] * 3
        out.append(Sample("SBI", f"person{p}", derived=True))
    out += [Sample("real", f"photo{i}", video=False) for i in range(20)]
    return out


@pytest.mark.parametrize("held_out", FAMILIES)
def test_lofo_split_keeps_families_and_identities_apart(held_out):
    samples = _samples()
    train, test = lofo_split(samples, held_out, FAMILIES)
    assert not (train & test).any()
    fams_train = {s.family for s, t in zip(samples, train) if t}
    assert held_out not in fams_train
    ids_train = {s.identity for s, t in zip(samples, train) if t}
    ids_test = {s.identity for s, t in zip(samples, test) if t}
    assert not ids_train & ids_test  # no person, and no source video, on both sides
    tested = [s for s, t in zip(samples, test) if t]
    assert {s.family for s in tested} == {held_out, "real"}
    assert all(s.video for s in tested)  # photos never tested
    assert sum(s.family == "real" for s in tested) > 0


def test_real_fold_is_stable():
    assert real_fold("person7") == real_fold("person7")
    assert len({real_fold(f"p{i}") for i in range(100)}) == 5


def test_family_weights_balance_families_and_classes():
    fams = np.array(["A"] * 10 + ["B"] * 2 + ["real"] * 6)
    w = family_weights(fams, np.ones(len(fams), bool))
    assert w[fams == "A"].sum() == pytest.approx(w[fams == "B"].sum())
    assert w[fams == "real"].sum() == pytest.approx(w[fams != "real"].sum())
    assert w.sum() == pytest.approx(len(fams))


def test_balanced_sampler_draws_half_real_and_fakes_evenly():
    fams = ["A"] * 100 + ["B"] * 5 + ["real"] * 50
    labels = ["fake"] * 105 + ["real"] * 50
    idx = balanced_indices(fams, labels, 4000, np.random.default_rng(0))
    drawn = np.asarray(fams)[idx]
    assert (drawn == "real").mean() == pytest.approx(0.5, abs=0.01)
    assert (drawn == "A").sum() == pytest.approx((drawn == "B").sum(), rel=0.15)


def test_aggregations():
    z = np.array([-2.0, -1.0, 0.0, 1.0, 10.0])
    assert aggregate(z, "mean_logit") == pytest.approx(1.6)
    assert aggregate(z, "median") == 0.0
    assert aggregate(z, "top3_mean") == pytest.approx(11 / 3)
    assert aggregate(z, "trimmed_mean") == pytest.approx(0.0)  # one cut from each end of five
    p = np.mean(1 / (1 + np.exp(-z)))
    assert aggregate(z, "mean_prob") == pytest.approx(np.log(p / (1 - p)))
    assert set(AGGREGATIONS) >= {"mean_prob", "mean_logit", "trimmed_mean", "top3_mean"}
    keys, v = video_logits(["b", "a", "b"], np.array([1.0, 5.0, 3.0]), "mean_logit")
    assert keys == ["a", "b"] and v.tolist() == [5.0, 2.0]
    with pytest.raises(ValueError):
        aggregate([], "mean_logit")


def test_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-true))
    assert fit_temperature(true * 3.0, y) == pytest.approx(3.0, rel=0.1)


def test_balanced_threshold_separates():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    y = np.array([0, 0, 0, 1, 1], bool)
    t = balanced_threshold(p, y)
    assert 0.3 < t < 0.7


def test_ship_rule():
    assert ship_decision(0.86, 0.83, 0.85, 0.70) == (True, False, [])
    ship, experimental, _ = ship_decision(0.86, 0.75, 0.85, 0.70)
    assert ship and experimental
    ship, _, why = ship_decision(0.84, 0.90, 0.85, 0.70)  # does not beat the baseline's LOFO
    assert not ship and "baseline" in why[0]
    ship, _, why = ship_decision(0.90, 0.71, 0.85, 0.70)
    assert not ship and any("dev-eval AUC 0.710 < 0.72" in w for w in why)
    assert ship_decision(0.74, 0.9, 0.5, 0.5, ShipRule())[0] is False
