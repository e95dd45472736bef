"""GET /health in-process (httpx ASGI transport, same event loop)."""


async def test_health_is_healthy_with_each_dependency(client):
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["environment"] == "testing"
    assert body["down"] == []
    assert set(body["checks"]) == {"database", "cache"}
    assert all(check["status"] == "up" for check in body["checks"].values())


async def test_unknown_path_is_a_problem_document(client):
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_wrong_method_is_a_problem_document(client):
    response = await client.post("/health")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Method Not Allowed"
