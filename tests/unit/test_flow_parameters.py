"""What the Prefect UI's custom-run form shows (issue 13): every flow parameter described and typed."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flusher.flows.bronze_flush import bronze_flush
from flusher.flows.catchup import bronze_catchup
from flusher.flows.maintenance import bronze_maintenance


@pytest.mark.parametrize("flow", [bronze_flush, bronze_maintenance, bronze_catchup], ids=lambda f: f.name)
def test_every_parameter_has_a_description_and_a_type(flow):
    properties = parameter_schema(flow.fn).model_dump()["properties"]
    assert properties
    for name, schema in properties.items():
        assert schema.get("description"), f"{flow.name}.{name} has no description (Google-style Args: section)"
        types = [schema.get("type")] + [option.get("type") for option in schema.get("anyOf", [])]
        assert any(t and t != "null" for t in types), f"{flow.name}.{name} shows no type"


def test_a_negative_ledger_cap_is_refused_before_the_run_starts():
    properties = parameter_schema(bronze_flush.fn).model_dump()["properties"]
    assert {"type": "integer", "minimum": 0} in properties["max_ledgers_per_run"]["anyOf"]
    with pytest.raises(ParameterTypeError, match="greater than or equal to 0"):
        bronze_flush.validate_parameters({"max_ledgers_per_run": -1})
