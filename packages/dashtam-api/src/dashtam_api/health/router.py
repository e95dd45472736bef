from fastapi.responses import JSONResponse

from dashtam_api.deps import HealthProbeDep
from dashtam_api.health.schemas import HealthReport
from dashtam_api.routing import api_router

router = api_router(tags=["health"])


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A dependency is down"}},
    name="check",
)
async def health(probe: HealthProbeDep) -> JSONResponse:
    """PostgreSQL and Valkey as of at most HEALTH_CACHE_SECONDS ago; 503 when one is down."""
    report = await probe.report()
    return JSONResponse(report, status_code=200 if report["status"] == "healthy" else 503)
