from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dashtam_api.deps import DatabaseDep, RedisDep, SettingsDep
from dashtam_api.health.schemas import HealthReport
from dashtam_api.health.service import check_health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A dependency is down"}},
)
async def health(settings: SettingsDep, db: DatabaseDep, redis: RedisDep) -> JSONResponse:
    report = await check_health(settings=settings, db=db, redis=redis)
    return JSONResponse(report, status_code=200 if report["status"] == "healthy" else 503)
