"""Helpers the reference checks share."""
from datetime import datetime


def event_ms(ts):
    """An event's `timestamp` (epoch ms or RFC 3339) as epoch milliseconds."""
    if isinstance(ts, (int, float)):
        return int(ts)
    return int(round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000))
