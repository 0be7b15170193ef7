"""What every request and response body is built on (camelCase on the wire, as ../spec/api.md fixes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ...store.models import BIGINT_MAX

__all__ = ["BIGINT_MAX", "ErrorResponse", "OkResponse", "Schema"]


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OkResponse(Schema):
    ok: bool = True


class ErrorResponse(Schema):
    error: str
    status_code: int
