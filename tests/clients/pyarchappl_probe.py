"""Runs inside the separate pyarchappl virtual environment (protobuf < 4 lives there only).

    python pyarchappl_probe.py BASE_URL PV FROM TO AT

Prints one JSON object with what pyarchappl made of our server's answers.
"""

import json
import sys

from archappl.data import ArchiverDataClient

base, pv, start, end, at = sys.argv[1:6]
out = {}
for fmt in ("raw", "json"):
    client = ArchiverDataClient(url=base, format=fmt)
    df = client.get_data(pv, from_time=start, to_time=end, tz="UTC")
    out[fmt] = (
        None
        if df is None
        else {
            "rows": len(df),
            "first_ms": int(df.index[0].value // 1_000_000),
            "last_ms": int(df.index[-1].value // 1_000_000),
            "vals": [None if v != v else float(v) for v in df["val"].tolist()],
            "severity": [int(x) for x in df["severity"].tolist()],
            "columns": sorted(df.columns.tolist()),
        }
    )
client = ArchiverDataClient(url=base)
out["at"] = client.get_data_at_time([pv], at)
print(json.dumps(out))
