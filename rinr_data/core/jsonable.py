"""Plain JSON values for manifests and reports: dataclasses, tuples and non-finite floats made JSON-safe."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples and non-finite floats to plain JSON values ("inf"/"-inf", NaN to null)."""
    if hasattr(value, "__dataclass_fields__"):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
