"""Base class for every typed config: strict (unknown keys are errors) and immutable."""
from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
