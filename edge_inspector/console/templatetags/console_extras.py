"""Template filters for the console pages."""

from django import template

register = template.Library()


@register.filter
def metric(value) -> str:
    """Rates and scores with 4 decimals, counts (parameters, bytes) with thousands separators."""
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.4f}"
