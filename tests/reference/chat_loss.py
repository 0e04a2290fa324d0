"""Loss of chat examples: transformers renders and tokenises, the readable reference forwards.

Reads {"model": dir, "data": file, "chat_template": str | null, "variables": {...}} on stdin; each
row becomes the sequences and trained-token masks of chat_reference.py (transformers'
apply_chat_template and tokenizer, the ENGINE-SPEC rule), and its loss is the mean NLL over the
trained tokens (losses.py, kind "chat") under models.py's float32 forward. Writes
{"examples": [{"sequences": [{"tokens", "spans"}], "loss"}], "batch_loss"}.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import chat_reference  # noqa: E402
import losses  # noqa: E402
import models  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402


def spans_of(mask):
    spans, start = [], None
    for t, m in enumerate(mask + [0]):
        if m and start is None:
            start = t
        if not m and start is not None:
            spans.append([start, t])
            start = None
    return spans


def main():
    req = json.load(sys.stdin)
    tok = PreTrainedTokenizerFast.from_pretrained(req["model"])
    cfg, params = models.load_model(req["model"])
    batch = []
    for row in chat_reference.read_rows(req["data"]):
        msgs = chat_reference.conversation(row)
        seqs = []
        for text, spans in chat_reference.sequences(tok, msgs, req.get("chat_template"), req.get("variables") or {}):
            ids, mask, _ = chat_reference.tokenised(tok, text, spans)
            seqs.append({"tokens": ids, "spans": spans_of(mask)})
        batch.append({"kind": "chat", "sequences": seqs})
    total, per = losses.batch_loss(cfg, params, batch, detail=True)
    json.dump({"examples": [dict(ex, loss=p[0]) for ex, p in zip(batch, per)], "batch_loss": total}, sys.stdout)


if __name__ == "__main__":
    main()
