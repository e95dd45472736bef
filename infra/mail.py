"""Reading the mail catcher (the local one, infra/mailcatcher.py, or Compose's Mailpit: the
same API) over HTTPS under the project's CA: `inv mail`, a test run's clean start, the tests."""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import InfraError

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class MailReader:
    url: str
    ca_file: Path
    timeout: float = 5.0

    def _request(self, method: str, path: str, **params: str) -> "httpx.Response":
        # Imported here: `inv up` starts the apps before it first reads the mail catcher, and
        # httpx is ~0.1 s of import in front of them otherwise.
        import httpx

        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            response = httpx.request(
                method, self.url + path, params=params, verify=context, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise InfraError(
                f"the mail catcher does not answer at {self.url} ({type(exc).__name__}): "
                "start it with `inv up`"
            ) from None
        if response.status_code == 404:
            raise InfraError(f"no such message: {path.rsplit('/', 1)[-1]}")
        if response.status_code >= 400:
            raise InfraError(f"the mail catcher refused {path}: {response.text.strip()[:200]}")
        return response

    def search(self, query: str = "", limit: int = 50) -> list[dict]:
        """Summaries (Mailpit's fields: ID, Created, From, To, Subject, Tags, Snippet), newest
        first."""
        answer = self._request("GET", "/api/v1/search", query=query, limit=str(limit))
        return answer.json()["messages"]

    def message(self, message_id: str) -> dict:
        """One message with its plain text (``Text``)."""
        return self._request("GET", f"/api/v1/message/{message_id}").json()

    def raw(self, message_id: str) -> str:
        return self._request("GET", f"/api/v1/message/{message_id}/raw").text

    def delete(self, query: str) -> None:
        self._request("DELETE", "/api/v1/search", query=query)


def environment_query(environment: str, *extra: str) -> str:
    """Messages one environment sent (its tag), narrowed by Mailpit search terms."""
    return " ".join([f"tag:{environment}", *extra])
