import pytest

import lrt
from lrt.book.ledger import Measurement, run_ledger


def test_measurement_bounds():
    assert Measurement.at_most(1e-12, 1e-10).passed and not Measurement.at_most(1e-9, 1e-10).passed
    assert Measurement.at_least(0.95, 0.9).passed and not Measurement.at_least(0.5, 0.9).passed


def test_prefix_selection_and_unknown_ids():
    ids = [c.id for c in lrt.claims()]
    assert ids == sorted(ids) and {"P1.conservation", "P1.gd_step_factor", "P1.gd_drift_first_order"} <= set(ids)
    assert [r.id for r in run_ledger(["P1.cons*"])] == ["P1.conservation"]
    with pytest.raises(lrt.LrtError, match="unknown claim 'P7.none'"):
        run_ledger(["P7.none"])


def test_claim_result_display_has_no_timing():
    result = lrt.check("P1.conservation")
    assert result.passed and result.measured <= 1e-10
    assert "seconds" not in repr(result) and "seconds" not in result._repr_html_()
    assert repr(result).startswith("P1.conservation [pass] measured ")


def test_every_claim_names_an_existing_chapter():
    from tests.test_docs import book_labels

    labels = book_labels()
    assert all(c.chapter in labels for c in lrt.claims())


def test_reproducible_rejects_bad_thread_counts():
    with pytest.raises(lrt.LrtError, match="threads: expected a positive int"):
        lrt.reproducible(0)


def test_a_moved_tolerance_is_never_a_plain_pass():
    from lrt.book.ledger import ClaimResult

    fields = dict(id="X.demo", chapter="ch-conservation", statement="s", prediction="p", tolerance="≤ 1", measured=0.5,
                  detail="", seconds=0.0)
    fixed = ClaimResult(**fields, passed=True)
    moved = ClaimResult(**fields, passed=True, tolerance_set="moved after")
    failed = ClaimResult(**fields, passed=False, tolerance_set="moved after")
    assert fixed.verdict == "pass" and failed.verdict == "FAIL"
    assert moved.verdict == "pass (tolerance moved after measurement)"
    assert str(moved).startswith("X.demo [pass (tolerance moved after measurement)] measured 0.5")
    assert "moved after measurement" in moved._repr_html_() and "fixed before measurement" in fixed._repr_html_()
    assert moved.as_dict()["tolerance_set"] == "moved after" and moved.as_dict()["verdict"] == moved.verdict


def test_every_claim_records_when_its_tolerance_was_set():
    when = {c.id: c.tolerance_set for c in lrt.claims()}
    assert set(when.values()) <= {"fixed before", "moved after"}
    assert when["P1.conservation"] == "fixed before"
    assert {i for i, w in when.items() if w == "moved after"} >= {"P2.attention", "P2.low_rank", "P2.lora", "P2.prune_large"}


def test_a_claim_names_when_its_tolerance_was_set():
    from lrt.book.ledger import claim

    with pytest.raises(lrt.LrtError, match="tolerance_set: expected 'fixed before' or 'moved after', got 'later'"):
        claim("X.bad", chapter="ch-conservation", statement="", prediction="", tolerance="", tolerance_set="later")


# --- `python -m lrt ledger --json`: every result is plain JSON, checked without measuring every claim ----


def test_measurements_store_plain_python_scalars_whatever_they_are_given():
    import numpy as np
    import torch

    for value, passed in [(np.float64(1e-12), np.float64(1e-12) <= 1e-10), (np.float32(0.5), np.bool_(False)),
                          (torch.tensor(2.0, dtype=torch.float64), torch.tensor(True)), (np.array(3.0), True), (7, False)]:
        m = Measurement(value, passed, "detail")
        assert type(m.value) is float and type(m.passed) is bool
    assert type(Measurement.at_most(np.float64(0.5), 1.0).passed) is bool
    assert type(Measurement.at_least(torch.tensor(0.5), 1.0).passed) is bool
    for bad, message in [(dict(value=torch.ones(2), passed=True), "value: expected a scalar, got a tensor of shape"),
                         (dict(value="0.1", passed=True), "value: expected a real number, got str"),
                         (dict(value=0.1, passed="yes"), "passed: expected a bool, got str"),
                         (dict(value=0.1, passed=1), "passed: expected a bool, got int"),
                         (dict(value=0.1, passed=True, detail=3), "detail: expected a str")]:
        with pytest.raises(lrt.LrtTypeError, match=message):
            Measurement(**bad)


def test_a_claim_result_is_plain_json_in_the_ledger_schema():
    import json

    import numpy as np

    from lrt.book.ledger import ClaimResult

    m = Measurement(np.float64(2.5e-12), np.bool_(True), "d", shown="< 1e-11 (tolerance 1e-10)")
    result = ClaimResult(id="P0.x", chapter="ch-conservation", statement="s", prediction="p", tolerance="t",
                         measured=m.value, passed=m.passed, detail=m.detail, seconds=0.5, shown=m.shown)
    as_dict = result.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    schema = {"id": str, "chapter": str, "statement": str, "prediction": str, "tolerance": str, "measured": float,
              "passed": bool, "detail": str, "seconds": float, "shown": str}
    assert {k: type(as_dict[k]) for k in schema} == schema
    assert all(type(v) in (str, float, bool) for v in as_dict.values())  # and any further field is plain too
    assert "measured < 1e-11 (tolerance 1e-10)" in str(result) and "&lt; 1e-11" in result._repr_html_()


def test_every_registered_claim_has_plain_text_fields():
    for c in lrt.claims():
        assert all(type(getattr(c, f)) is str for f in ("id", "chapter", "statement", "prediction", "tolerance")), c.id


def test_ledger_json_of_measured_claims_parses(capsys):
    import json

    from lrt.cli import main

    assert main(["ledger", "--json", "P1.conservation", "P1.gd_step_factor"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in out["claims"]] == ["P1.conservation", "P1.gd_step_factor"] and out["all_passed"] is True
