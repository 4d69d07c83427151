"""What every settings group shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Group(BaseModel):
    """One concern's settings. Unknown names are refused; `model_` names (model_dir) are ours, not pydantic's."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
