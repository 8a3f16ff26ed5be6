from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lit_codellama.evaluation.metrics import pass_at_k, pass_at_k_table


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_one_minus_the_chance_that_k_draws_all_fail(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-9)


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 1, 5) == 1.0


def test_table_reports_only_the_k_every_problem_has_samples_for():
    table = pass_at_k_table([(10, 1), (10, 0), (5, 5)], ks=(1, 5, 10))
    assert set(table) == {"pass@1", "pass@5"}
    assert table["pass@1"] == pytest.approx((0.1 + 0.0 + 1.0) / 3)


def test_invalid_counts_are_rejected():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
