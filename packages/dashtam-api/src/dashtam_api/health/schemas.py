from typing import Literal

from pydantic import BaseModel


class DependencyHealth(BaseModel):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    status: Literal["healthy", "degraded"]
    service: str = "api"
    version: str
    environment: str
    checks: dict[str, DependencyHealth]
    down: list[str]
