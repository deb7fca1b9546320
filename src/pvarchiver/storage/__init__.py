"""AA-compatible PlainPB stores (STS/MTS/LTS), partitions and ETL."""

from .batch import Batch, BatchResult, append_samples
from .etl import ETLStats, consolidate, run_etl
from .partitions import Granularity, next_etl_time, partition_bounds, partition_for
from .paths import pv_name_to_key
from .store import AppendResult, PlainPBStore, StoreError, TypeMismatchError, open_store
from .url import StoreConfig, StoreURLError, default_store_urls, parse_store_url

__all__ = [
    "AppendResult",
    "Batch",
    "BatchResult",
    "ETLStats",
    "Granularity",
    "PlainPBStore",
    "StoreConfig",
    "StoreError",
    "StoreURLError",
    "TypeMismatchError",
    "append_samples",
    "consolidate",
    "default_store_urls",
    "next_etl_time",
    "open_store",
    "parse_store_url",
    "partition_bounds",
    "partition_for",
    "pv_name_to_key",
    "run_etl",
]
