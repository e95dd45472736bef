"""The query of every list: ``?limit=&offset=``, nothing else.

A query parameter the list does not know is refused (422), as an unknown field in a request
body is: a misspelt ``?limt=5`` that was silently ignored would hand back a page the client did
not ask for.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.query_strings import QueryModel


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100, description="Items per page.")
    offset: int = Field(0, ge=0, le=1_000_000, description="Items to skip.")


PageDep = Annotated[PageQuery, QueryModel(PageQuery)]
