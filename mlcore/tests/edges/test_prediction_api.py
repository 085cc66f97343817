"""GET /api/predictions/ with outcomes: filters by resolved, outcome status, version and bar time (a bad value is a 400
naming the parameter), and each prediction's outcome per side."""
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from mlcore.models import Prediction
from trading.tests.decisions import bar_at, model_version, prediction
from trading.tests.factories import SERIES_ORIGIN, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def client(django_user_model):
    user = django_user_model.objects.create_user(username="analyst", password="a-long-test-password-7")
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def book():
    """NQ 1m: bars 0-4 predicted by version `old` (0, 1) and `new` (2, 3, 4); 0 and 2 resolved, 1 unresolvable."""
    nq = InstrumentFactory(symbol="NQ")
    bars = [bar_at(nq, i) for i in range(5)]
    old, new = model_version(nq), model_version(nq)
    rows = [prediction(bars[0], old), prediction(bars[1], old, side="short"), prediction(bars[2], new),
            prediction(bars[3], new), prediction(bars[4], new)]
    resolved_at = timezone.now()
    Prediction.objects.filter(pk=rows[0].pk).update(
        outcome_status="resolved", outcome_long="take_profit", outcome_short="stop", return_long=0.0021,
        return_short=-0.0014, exit_long_at=bars[0].timestamp + timedelta(minutes=7),
        exit_short_at=bars[0].timestamp + timedelta(minutes=7), resolved_at=resolved_at)
    Prediction.objects.filter(pk=rows[2].pk).update(
        outcome_status="resolved", outcome_long="timeout", outcome_short="timeout", return_long=0.0003,
        return_short=-0.0003, exit_long_at=bars[2].timestamp + timedelta(minutes=30),
        exit_short_at=bars[2].timestamp + timedelta(minutes=30), resolved_at=resolved_at)
    Prediction.objects.filter(pk=rows[1].pk).update(outcome_status="unresolvable",
                                                    outcome_note="a gap in the bars before any barrier")
    return {"bars": bars, "old": old, "new": new, "rows": rows}


def listed(client, **query) -> list[int]:
    """The bar numbers (0-4) of the predictions listed, newest bar first."""
    response = client.get("/api/predictions/", {"symbol": "NQ", **query})
    assert response.status_code == 200, response.json()
    return [round((datetime.fromisoformat(p["bar_timestamp"].replace("Z", "+00:00")) - SERIES_ORIGIN)
                  / timedelta(minutes=1)) for p in response.json()["results"]]


def refusal(client, **query) -> dict:
    response = client.get("/api/predictions/", {"symbol": "NQ", **query})
    assert response.status_code == 400
    return response.json()


def test_each_prediction_carries_its_outcome_per_side(client, book):
    response = client.get("/api/predictions/", {"symbol": "NQ"})

    by_id = {p["id"]: p for p in response.json()["results"]}
    won = by_id[book["rows"][0].pk]
    assert (won["outcome_status"], won["outcome_long"], won["outcome_short"]) == ("resolved", "take_profit", "stop")
    assert (won["return_long"], won["return_short"]) == (0.0021, -0.0014)
    assert won["exit_long_at"] == won["exit_short_at"] == iso(book["bars"][0].timestamp + timedelta(minutes=7))
    assert won["resolved_at"] is not None and won["outcome_note"] == ""
    pending = by_id[book["rows"][3].pk]
    assert (pending["outcome_status"], pending["outcome_long"], pending["outcome_short"]) == ("pending", "", "")
    assert (pending["return_long"], pending["exit_long_at"], pending["resolved_at"]) == (None, None, None)
    assert by_id[book["rows"][1].pk]["outcome_note"] == "a gap in the bars before any barrier"


def test_without_filters_every_prediction_is_listed(client, book):
    assert listed(client) == [4, 3, 2, 1, 0]  # an absent `resolved` is no filter, not "false"


def test_resolved_true_lists_resolved_outcomes_only(client, book):
    assert listed(client, resolved="true") == [2, 0]


def test_resolved_false_lists_predictions_without_an_outcome(client, book):
    assert listed(client, resolved="false") == [4, 3, 1]


def test_outcome_status_filter(client, book):
    assert listed(client, outcome_status="unresolvable") == [1]
    assert listed(client, outcome_status="pending") == [4, 3]


def test_version_filter(client, book):
    assert listed(client, version=book["old"].pk) == [1, 0]
    assert listed(client, version=book["new"].pk, resolved="true") == [2]


def test_since_is_inclusive_and_until_exclusive_on_the_bar_time(client, book):
    bars = book["bars"]

    assert listed(client, since=iso(bars[1].timestamp), until=iso(bars[3].timestamp)) == [2, 1]
    assert listed(client, since=iso(bars[3].timestamp)) == [4, 3]
    # Any offset is read as the moment it names: 09:32 in New York (winter) is bar 2's 14:32 UTC.
    assert listed(client, until="2024-01-02T09:32:00-05:00") == [1, 0]


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_resolved_value_is_a_400_naming_it(client, value):
    assert set(refusal(client, resolved=value)) == {"resolved"}


def test_an_unknown_outcome_status_is_a_400_naming_it(client):
    body = refusal(client, outcome_status="won")

    assert set(body) == {"outcome_status"}
    assert '"won" is not a valid choice.' in body["outcome_status"][0]


@pytest.mark.parametrize("value", ["0", "-3", "abc", str(2**63)])
def test_a_bad_version_is_a_400_naming_it(client, value):
    assert set(refusal(client, version=value)) == {"version"}


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_time_without_a_zone_is_a_400_naming_the_field(client, field):
    body = refusal(client, **{field: "2024-01-02T14:31:00"})

    assert body == {field: ["Give a UTC offset or Z (e.g. 2024-01-02T14:30:00Z); times without a zone are not "
                            "guessed."]}


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-02T00:00:00Z", "1704206000"])
def test_a_malformed_time_is_a_400_naming_the_field(client, field, value):
    assert set(refusal(client, **{field: value})) == {field}


def test_since_not_before_until_is_a_400_naming_until(client):
    body = refusal(client, since="2024-01-02T14:32:00Z", until="2024-01-02T14:32:00Z")

    assert body == {"until": ["until must be later than since (since is inclusive, until exclusive)."]}
