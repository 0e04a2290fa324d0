"""Chat data, rendered and masked by transformers: the reference for electron/data/chat.ts.

Reads a JSON request on stdin:
  {"cases": [{"id": str, "model": dir, "data": file (.jsonl or a .json array),
              "chat_template": str | null,      # null: the model's own (tokenizer_config.json / chat_template.jinja)
              "variables": {...},               # extra apply_chat_template kwargs (e.g. enable_thinking)
              "now": "YYYY-MM-DDTHH:MM:SS",      # what strftime_now reads (local time)
              "generation_mask": bool}]}        # also return transformers' {% generation %} assistant mask
and writes, per case and row, the sequences the row is trained as:
  {"text": str, "input_ids": [int], "mask": [0|1], "segment_ids": [int]}
or {"error": str} for a row the rule cannot split (a reply's rendering does not continue its prompt).

Independent of the TypeScript side: rows are read and converted here (OpenAI messages as they are,
ShareGPT from/value with human/gpt/system, Alpaca user = instruction + "\\n" + input), rendered with
transformers' apply_chat_template (Python's jinja2), tokenised by PreTrainedTokenizerFast from the same
files, and split by the rule of docs/ENGINE-SPEC.md ("Losses"):

  reply k = render(messages[:k+1]) minus render(messages[:k], add_generation_prompt=True).

The latest reply's rendering is a sequence; each earlier reply whose rendering is a prefix of it is
trained there too; the latest reply left over starts the next sequence (before it), and so on.
input_ids tokenise the whole text at once (as apply_chat_template does); the mask marks the tokens
whose characters lie in a reply (transformers' char_to_token, as for {% generation %} masks).
segment_ids tokenise context and replies separately (the rule's own tokenisation).
"""
import datetime as _dt
import json
import sys

import transformers.utils.chat_template_utils as ctu
from transformers import PreTrainedTokenizerFast

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def conversation(row):
    if "messages" in row:
        return [dict(m) for m in row["messages"]]
    if "conversations" in row:
        return [{"role": SHAREGPT_ROLES[m["from"]], "content": m["value"]} for m in row["conversations"]]
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": row["system"]})
    user = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    return msgs


class NotAContinuation(Exception):
    pass


class FixedClock(_dt.datetime):
    at = None

    @classmethod
    def now(cls, tz=None):
        return cls.at


def sequences(tok, msgs, template, variables):
    def render(ms, agp):
        return tok.apply_chat_template(ms, tokenize=False, add_generation_prompt=agp, chat_template=template, **variables)

    replies = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    parts = {}
    for k in replies:
        context, full = render(msgs[:k], True), render(msgs[: k + 1], False)
        if not full.startswith(context):
            raise NotAContinuation(f"message {k + 1}: the reply's rendering does not begin with the prompt's")
        parts[k] = (len(context), len(full), full)
    out = []
    left = list(replies)
    while left:
        text = parts[left[-1]][2]
        here = [j for j in left if text.startswith(parts[j][2])]
        out.insert(0, (text, [(parts[j][0], parts[j][1]) for j in here]))
        left = [j for j in left if j not in here]
    return out


def tokenised(tok, text, spans):
    enc = tok(text, add_special_tokens=False)
    ids = enc["input_ids"]
    mask = [0] * len(ids)
    for a, b in spans:
        first, last = enc.char_to_token(a), enc.char_to_token(b - 1)
        for t in range(first, last + 1):
            mask[t] = 1
    cuts = sorted({0, len(text), *[x for s in spans for x in s]})
    segment_ids = []
    for a, b in zip(cuts, cuts[1:]):
        segment_ids += tok(text[a:b], add_special_tokens=False)["input_ids"]
    return ids, mask, segment_ids


def main():
    req = json.load(sys.stdin)
    results = []
    for case in req["cases"]:
        FixedClock.at = _dt.datetime.fromisoformat(case["now"])
        ctu.datetime = FixedClock
        tok = PreTrainedTokenizerFast.from_pretrained(case["model"])
        template = case.get("chat_template")
        variables = case.get("variables") or {}
        rows = []
        for row in read_rows(case["data"]):
            msgs = conversation(row)
            seqs = []
            try:
                split = sequences(tok, msgs, template, variables)
            except NotAContinuation as e:
                rows.append({"error": str(e)})
                continue
            for text, spans in split:
                ids, mask, segment_ids = tokenised(tok, text, spans)
                seqs.append({"text": text, "input_ids": ids, "mask": mask, "segment_ids": segment_ids})
            entry = {"sequences": seqs}
            if case.get("generation_mask"):
                last = max(k for k, m in enumerate(msgs) if m["role"] == "assistant")
                out = tok.apply_chat_template(msgs[: last + 1], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                              chat_template=template, **variables)
                entry["generation"] = {"input_ids": list(out["input_ids"]), "mask": list(out["assistant_masks"])}
            rows.append(entry)
        results.append({"id": case["id"], "rows": rows})
    json.dump({"transformers": __import__("transformers").__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
