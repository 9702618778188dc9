"""Reads Loom's TensorBoard event files back, for tests/train/tensorboard_test.cpp.

    tensorboard_reference.py DIR [OUT.json]

Reads every event file in DIR with tbparse (SummaryReader(DIR, pivot=False)) and writes
{"scalars": [{"tag", "step", "value"}, ...], "text": [{"tag", "step", "value"}, ...],
 "files": {name: {"records": n, "file_version": "brain.Event:2"}}}
to OUT (or prints it). As a second opinion each file is also read with TensorBoard's own
EventFileLoader, which must give the same scalars and text. That loader checks the CRCs but
stops silently at a bad or truncated record (it takes it for a file still being written), so
the records are first walked with TensorBoard's stub TFRecord reader, which raises on any
length or CRC mismatch: a rejected record fails the script (exit 1).
"""

import json
import os
import sys

from tbparse import SummaryReader
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.util import tensor_util


def fail(message):
    print(f"tensorboard_reference.py: {message}", file=sys.stderr)
    sys.exit(1)


def count_records(path):
    """Walks the TFRecord framing; any length or CRC mismatch fails the script."""
    reader = PyRecordReader_New(path)
    n = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:  # clean end of file, after a whole record
            return n
        except errors.DataLossError as e:
            fail(f"record {n} of {path} rejected: {e.message}")
        n += 1


def loader_entries(path):
    """Events through EventFileLoader (with its data_compat migration: a simple_value becomes
    a scalars-plugin tensor). Returns (event count, file_version, scalars, text)."""
    events = list(EventFileLoader(path).Load())
    scalars, text = [], []
    for event in events[1:]:
        for v in event.summary.value:
            plugin = v.metadata.plugin_data.plugin_name
            value = tensor_util.make_ndarray(v.tensor).item()
            if plugin == "scalars":
                scalars.append({"tag": v.tag, "step": event.step, "value": float(value)})
            elif plugin == "text":
                text.append({"tag": v.tag, "step": event.step, "value": value.decode("utf-8")})
            else:
                fail(f"{path}: unexpected plugin {plugin!r} for tag {v.tag!r}")
    file_version = events[0].file_version if events else None
    return len(events), file_version, scalars, text


def rows(frame):
    return [{"tag": str(r.tag), "step": int(r.step), "value": r.value}
            for r in frame.itertuples()]


def key(entry):
    return (entry["tag"], entry["step"])


def main(directory, out_path):
    reader = SummaryReader(directory, pivot=False)
    result = {"scalars": [dict(r, value=float(r["value"])) for r in rows(reader.scalars)],
              "text": rows(reader.text), "files": {}}

    loader_scalars, loader_text = [], []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if "tfevents" not in name or not os.path.isfile(path):
            continue  # a run folder also holds metrics.jsonl, checkpoints/, adapter/, ...
        records = count_records(path)
        n_events, file_version, scalars, text = loader_entries(path)
        if n_events != records:
            fail(f"{path}: EventFileLoader read {n_events} of {records} records")
        if file_version != "brain.Event:2":
            fail(f"{path}: first event has file_version {file_version!r}")
        result["files"][name] = {"records": records, "file_version": file_version}
        loader_scalars += scalars
        loader_text += text
    for kind, mine in (("scalars", loader_scalars), ("text", loader_text)):
        if sorted(mine, key=key) != sorted(result[kind], key=key):
            fail(f"{kind}: tbparse and EventFileLoader disagree:\n"
                 f"  tbparse: {sorted(result[kind], key=key)}\n  loader:  {sorted(mine, key=key)}")

    text = json.dumps(result)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        fail("usage: tensorboard_reference.py DIR [OUT.json]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
