"""What every request and response body is built on (camelCase on the wire, as ../spec/api.md fixes)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from ...agents import ENV_NAME
from ...store.models import BIGINT_MAX

__all__ = ["BASE64", "BIGINT_MAX", "EnvVars", "ErrorResponse", "OkResponse", "Public", "Schema"]

# Environment variables by name (what agents.validate_env takes), and bytes as base64 text, as the schema says.
EnvVars = Annotated[dict[str, str], Field(json_schema_extra={"propertyNames": {"pattern": ENV_NAME}})]
# The pattern says what `base64.b64decode(..., validate=True)` takes; the handlers check it (and say "not valid
# base64"): contentEncoding alone asserts nothing in JSON Schema 2020-12.
BASE64: JsonDict = {
    "contentEncoding": "base64",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Public(Schema):
    """A response shape read off a store row (or any object with attributes of its fields' names):
    `XPublic.of(row)`."""

    @classmethod
    def of(cls, row: Any, **values: Any) -> Self:
        """Each field is the row's attribute of the same name, unless `values` gives it (or the row has no such
        attribute and the field has a default)."""
        read = {name: getattr(row, name) for name in cls.model_fields if name not in values and hasattr(row, name)}
        return cls.model_validate({**read, **values}, from_attributes=True)


class OkResponse(Schema):
    ok: bool = True


class ErrorResponse(Schema):
    error: str
    status_code: int
