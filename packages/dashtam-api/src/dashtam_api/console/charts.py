"""Charts drawn on the server as SVG (no script, nothing fetched): a line over periods.

Coordinates are worked out in Decimal like the amounts they draw (never a float), then written
with two decimals. Each chart is an image with a title and a description a screen reader
reads; the page shows the same figures as a table beside it.
"""

from decimal import Decimal
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = Decimal(600), Decimal(200), Decimal(8)
TWO = Decimal("0.01")


def line(points: list[tuple[str, Decimal]], *, key: str, title: str, description: str) -> Markup:
    """``points``: (period label, value), oldest first; ``key`` tells this chart's ids apart
    from another's on the page."""
    if not points:
        return Markup("")
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if low == high:  # a flat line (or one point) is drawn across the middle
        low, high = low - 1, high + 1
    spread = high - low
    step = (WIDTH - 2 * PAD) / max(len(points) - 1, 1)

    def at(n: int, value: Decimal) -> str:
        x = PAD + step * n
        y = HEIGHT - PAD - (value - low) / spread * (HEIGHT - 2 * PAD)
        return f"{x.quantize(TWO)},{y.quantize(TWO)}"

    drawn = " ".join(at(n, v) for n, (_, v) in enumerate(points))
    dots = "".join(
        f'<circle cx="{at(n, v).split(",")[0]}" cy="{at(n, v).split(",")[1]}" r="2.5"/>'
        for n, (_, v) in enumerate(points)
    )
    return Markup(  # noqa: S704 -- every text in it escaped here, the rest numbers
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{key}-t {key}-d" '
        f'class="chart"><title id="{key}-t">{escape(title)}</title>'
        f'<desc id="{key}-d">{escape(description)}</desc>'
        f'<polyline points="{drawn}" fill="none" stroke="currentColor" stroke-width="2"/>'
        f'<g fill="currentColor">{dots}</g></svg>'
    )
