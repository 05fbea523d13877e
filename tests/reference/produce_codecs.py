"""Produces NDJSON events to Kafka with the pure-Python kafka-python client (not librdkafka),
compressed with one codec, keyed service/model like inferwatch's own producer.

usage: produce_codecs.py BROKERS TOPIC FILE CODEC [--corrupt-after N]

CODEC is gzip, snappy, lz4, zstd or none. With --corrupt-after N, the first N events go out
as intact batches, then one batch whose compressed bytes are damaged (its CRC recomputed, so
the broker stores it as it is), then the rest: a batch no client can decompress.
Prints how many events went out in each part.
"""

import json
import struct
import sys

from kafka import KafkaProducer
from kafka.record import default_records
from kafka.record.util import calc_crc32c

CORRUPT = [False]
_build = default_records.DefaultRecordBatchBuilder.build


def _maybe_corrupt(self):
    buf = _build(self)
    if CORRUPT[0]:
        header = default_records.DefaultRecordBase.HEADER_STRUCT.size
        # Damage the middle of the compressed records; the codec cannot undo it.
        for i in range(header + 8, min(len(buf) - 8, header + 200)):
            buf[i] ^= 0x5A
        crc_at = default_records.DefaultRecordBase.CRC_OFFSET
        attrs_at = default_records.DefaultRecordBase.ATTRIBUTES_OFFSET
        struct.pack_into(">I", buf, crc_at, calc_crc32c(bytes(buf[attrs_at:])))
    return buf


default_records.DefaultRecordBatchBuilder.build = _maybe_corrupt


def key_of(line):
    try:
        e = json.loads(line)
        return f"{e['service']}/{e['model']}".encode()
    except Exception:
        return None


def main():
    brokers, topic, path, codec = sys.argv[1:5]
    corrupt_after = None
    if "--corrupt-after" in sys.argv:
        corrupt_after = int(sys.argv[sys.argv.index("--corrupt-after") + 1])
    producer = KafkaProducer(
        bootstrap_servers=brokers,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        batch_size=256 * 1024,
        acks="all",
    )
    with open(path, "rb") as f:
        # Every line is a message, blank ones too (the file source makes them dead letters).
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    parts = [lines] if corrupt_after is None else [
        lines[:corrupt_after],
        lines[corrupt_after:corrupt_after + 50],
        lines[corrupt_after + 50:],
    ]
    sent = []
    for i, part in enumerate(parts):
        CORRUPT[0] = corrupt_after is not None and i == 1
        for line in part:
            producer.send(topic, key=key_of(line), value=line, partition=0 if corrupt_after is not None else None)
        producer.flush()
        sent.append(len(part))
    producer.close()
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
