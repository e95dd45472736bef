"""The headers every HTML page Dashtam serves carries: the sandbox's approval page, the callback
server's result page, the API's docs.

No framing (an OAuth approval page in someone else's frame is the classic click-jacking), no
MIME sniffing, no referrer (a page's URL can carry an authorization's state), nothing kept in a
cache (each page is for one request), and a content security policy of the page's own that
allows nothing from anywhere but the page's origin.
"""

# What every page's policy ends with, whatever else it allows.
_EVERY_PAGE = "frame-ancestors 'none'; base-uri 'none'"


def page_headers(policy: str) -> dict[str, str]:
    """The headers of a page whose content security policy starts with ``policy``."""
    return {
        "Content-Security-Policy": f"{policy}; {_EVERY_PAGE}",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
