"""The baseline: the smallest FastAPI app, served exactly like Dashtam's API (same uvicorn, same
certificates, same Python environment). ``inv bench api`` measures both side by side."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict:
    return {"hello": "world"}
