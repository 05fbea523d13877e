"""Reads inferwatch's tables straight from an S3 bucket with pyarrow (its own S3 client,
Hive partitions), and queries them with DuckDB over the pyarrow datasets (DuckDB's httpfs
extension is downloaded at run time, which this machine cannot). Prints row counts as JSON.

usage: check_s3.py ENDPOINT BUCKET PREFIX   (credentials from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, as any S3 tool takes them)
"""

import json
import os
import sys
from urllib.parse import urlparse

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs


def main():
    endpoint, bucket, prefix = sys.argv[1:4]
    url = urlparse(endpoint)
    fs = pafs.S3FileSystem(
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=url.netloc,
        scheme=url.scheme,
        region="us-east-1",
    )
    out = {}
    for table in ["events", "metrics", "dead_letter"]:
        d = ds.dataset(
            f"{bucket}/{prefix}/{table}",
            filesystem=fs,
            format="parquet",
            partitioning="hive",
        )
        out[table] = d.count_rows()
        if table == "events":
            events = d  # noqa: F841 (read by DuckDB below, by name)
            out["duckdb_events"] = duckdb.sql("SELECT count(*) FROM events").fetchall()[0][0]
            out["distinct_ids"] = duckdb.sql(
                "SELECT count(DISTINCT event_id) FROM events"
            ).fetchall()[0][0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
