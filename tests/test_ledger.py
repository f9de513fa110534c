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
