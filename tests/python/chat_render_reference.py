"""Reference chat renderings, token ids and loss masks for Loom's `trainer prepare` (ctest `reference`).

    chat_render_reference.py --out FILE.json [--tokenizers-root DIR] [--show]

For every tokenizer folder under DIR (default <repo>/../shared/tokenizers; qwen3, qwen2_5 and
llama3_1 today), every conversation in CONVERSATIONS, train_on "all-assistant" and
"last-assistant", and for qwen3 also enable_thinking true and false, it writes a case with
  text   tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False, **kwargs)
         with the folder's own chat template (transformers.AutoTokenizer, offline);
  ids    apply_chat_template(..., tokenize=True), asserted equal to tok(text, add_special_tokens=False);
  spans  the trained (assistant) spans as [start, end) UTF-8 BYTE offsets into text, one per
         selected assistant message, in message order (definition below);
  mask   per token, 1 when its character range from return_offsets_mapping overlaps a span
         (s < span_end and e > span_start), which is the rule transformers applies to
         {% generation %} blocks: every token from the one holding the span's first char to the
         one holding its last char;
  hf_assistant_masks  null (these templates have no {% generation %}).
It also writes cases with "template" set to GENERATION_TEMPLATE, a ChatML template written for
this test that wraps each assistant `content + '<|im_end|>'` in {% generation %}, rendered with
the qwen2_5 tokenizer: there spans are transformers' own generation char ranges (from
render_jinja_template(..., return_assistant_tokens_mask=True)), hf_assistant_masks is
apply_chat_template(..., return_assistant_tokens_mask=True)["assistant_masks"], and for
all-assistant the script asserts mask == hf_assistant_masks (the overlap rule is HF's rule).
Conversations a template refuses (apply_chat_template raises) are left out and listed in
"skipped": [{"tokenizer", "name", "error"}].

Span definition for templates without {% generation %}, in characters of F = render(messages,
False), with render(msgs, gen) = apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen):
  1. start_gen = len(common prefix of F and render(messages[:i], True)); +inf if i == 0 or it raises.
     This is where the model starts generating at inference: the trainer must train on whatever
     the template writes after the generation prompt (e.g. Qwen3's "<think>\\n\\n</think>\\n\\n"
     when enable_thinking is true, since the prompt does not contain it then).
  2. S = messages with S[i]["content"] = SENTINEL and S[i]'s "tool_calls" removed (put back when
     the template then raises); F_S = render(S, False). a = where SENTINEL stands in F_S and
     b = the length of what follows it, when it stands there once and F_S agrees with F before
     and after it; else a, b = the common prefix / suffix lengths of F and F_S (b capped so that
     a + b <= min(len(F), len(F_S))); the prefix / suffix alone would run into an answer that
     begins or ends like the sentinel (one ending in "a"). content_end = len(F) - b. Whatever the
     template made of message i's output (content and tool calls) lies in F[a:content_end],
     however it was trimmed, split or moved. (Marking the content alone misses the tool calls:
     Qwen writes them after the content, Llama 3.1 writes them instead of it.)
  3. end = content_end, extended by the longest special added token that F[end:] starts with
     (the end-of-turn token, "<|im_end|>" / "<|eot_id|>"), so the model learns to stop.
  4. span = [min(start_gen, a), end); spans of successive messages must not overlap (asserted;
     Loom refuses such a template).
Only the template, the tokenizer and jinja2 are involved: no per-model rule, which is why the C++
side can apply the same definition to any template it is given.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTINEL = "LOOMSENTINEL7f3a"
TRAIN_ON = ("all-assistant", "last-assistant")

GENERATION_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message.content + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _u(c):
    return {"role": "user", "content": c}


def _a(c, **kw):
    return {"role": "assistant", "content": c, **kw}


def _s(c):
    return {"role": "system", "content": c}


SYS = _s("You are a helpful assistant.")
TOOL_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
THREE = [_u("What is 2+2?"), _a("4"), _u("And 3+3?"), _a("6."), _u("And 4+4?"), _a("It is 8.")]

CONVERSATIONS = [
    ("single_turn", [_u("Hi!"), _a("Hello! How can I help?")]),
    ("single_turn_system", [SYS, _u("Hi!"), _a("Hello! How can I help?")]),
    ("multi_turn", THREE),
    ("multi_turn_system", [SYS] + THREE),
    ("empty_assistant_last", [_u("Say nothing."), _a("")]),
    ("empty_assistant_middle", [_u("Say nothing."), _a(""), _u("Now say hi."), _a("hi")]),
    ("non_ascii", [_u("你好，世界！こんにちは 😀 e\u0301 café"),
                   _a("中文回答 👍🏽 et voilà, señor — שלום עולם")]),
    ("whitespace", [_s("  padded system \n"), _u("\n\n  leading and trailing whitespace \t\n"),
                    _a("\n  answer with spaces  \n\n"), _u(" again "), _a("\tsecond\n")]),
    ("think_in_content", [_u("Think first."), _a("<think>\nplan\n</think>\n\nanswer")]),
    # Begins and ends like the sentinel ("LOOM...7f3a"): the texts' common prefix and suffix
    # alone would run into it; NFD accents that the tokenizer's NFC changes.
    ("fullwidth_hangul", [_u("仜亣戯訮"), _a("ｆｕｌｌｗｉｄｔｈ\u3000ＡＢＣ１２３\"\u3000\u000b\u200b've"),
                          _u("Привет, мир! Как дела?"), _a("안녕하세요 세계. 한국어 문장을 토큰화합니다.")]),
    # Hangul in jamo (NFD): NFC composes it, and the tokens of the changed text share one offset.
    ("nfd_hangul", [_u("\ue795Hi"), _a("\u110b\u1161\u11ab\u1102\u1167\u11bc \u1112\u1161\u1103\u1161.")]),
    ("like_sentinel", [_u("Spell it."), _a("LOOK, a banana"), _u("Accents?"),
                       _a("Lorem cafe\u0301 n\u0303a")]),
    ("think_in_content_multi", [_u("Think first."), _a("<think>\nplan\n</think>\n\nanswer"),
                                _u("Again."), _a("<think>\nplan 2\n</think>\n\nanswer 2")]),
    ("reasoning_single", [_u("Q"), _a("A", reasoning_content="because\nreasons")]),
    ("reasoning_multi", [_u("Q"), _a("A", reasoning_content="because"),
                         _u("Q2"), _a("A2", reasoning_content="reasoning two")]),
    ("tool_turn", [_u("What is the weather in Paris?"), _a("Let me check.", tool_calls=[TOOL_CALL]),
                   {"role": "tool", "content": "{\"temp\": 21}"}, _a("It is 21 degrees in Paris.")]),
    ("system_then_assistant", [_s("Greet the user."), _a("Hello there!")]),
    ("assistant_first", [_a("How can I help?"), _u("Say hi."), _a("hi")]),
]


def byte_offsets(text):
    """cum[k] = UTF-8 byte offset of char k (len(text) + 1 entries)."""
    cum = [0]
    for ch in text:
        cum.append(cum[-1] + len(ch.encode("utf-8")))
    return cum


def common_prefix(x, y):
    return len(os.path.commonprefix([x, y]))


def common_suffix(x, y):
    return len(os.path.commonprefix([x[::-1], y[::-1]]))


def derived_spans(tok, messages, kwargs, selected):
    """Char spans of the selected assistant messages by the definition in the docstring."""
    render = lambda msgs, gen: tok.apply_chat_template(  # noqa: E731
        msgs, tokenize=False, add_generation_prompt=gen, **kwargs)
    full = render(messages, False)
    specials = [t.content for t in tok.added_tokens_decoder.values() if t.special]
    spans = []
    for i in selected:
        start_gen = math.inf
        if i > 0:
            try:
                start_gen = common_prefix(full, render(messages[:i], True))
            except Exception:  # noqa: BLE001 - a template may refuse a prefix; then a alone decides
                pass
        subst = copy.deepcopy(messages)
        subst[i]["content"] = SENTINEL
        calls = subst[i].pop("tool_calls", None)
        try:
            full_s = render(subst, False)
        except Exception:  # noqa: BLE001 - a template that needs the calls gets them back
            if calls is None:
                raise
            subst[i]["tool_calls"] = calls
            full_s = render(subst, False)
        at = full_s.find(SENTINEL)
        tail = len(full_s) - at - len(SENTINEL)
        if (at >= 0 and full_s.rfind(SENTINEL) == at and tail <= len(full) - at
                and full[:at] == full_s[:at] and full[len(full) - tail:] == full_s[at + len(SENTINEL):]):
            a, b = at, tail
        else:
            a = common_prefix(full, full_s)
            b = min(common_suffix(full, full_s), min(len(full), len(full_s)) - a)
        end = len(full) - b
        ends = [t for t in specials if full.startswith(t, end)]
        if ends:
            end += max(len(t) for t in ends)
        spans.append([min(start_gen, a), end])
        assert len(spans) < 2 or spans[-2][1] <= spans[-1][0], f"overlapping spans {spans}"
    return spans


def overlap_mask(offsets, spans):
    return [int(any(s < e2 and e > s2 for s2, e2 in spans)) for s, e in offsets]


def make_case(tok, folder, name, messages, kwargs, train_on, template):
    """One case; raises whatever apply_chat_template raises for the full conversation."""
    extra = {} if template is None else {"chat_template": template}
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False, **extra, **kwargs)
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=False, return_dict=False,
                                  **extra, **kwargs)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert list(ids) == enc["input_ids"], f"{folder} {name}: apply_chat_template ids != tok(text) ids"
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    selected = assistants if train_on == "all-assistant" else assistants[-1:]
    hf_masks = None
    if template is None:
        spans = derived_spans(tok, messages, kwargs, selected)
    else:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, gen_indices = render_jinja_template(
            conversations=[messages], chat_template=template, return_assistant_tokens_mask=True,
            add_generation_prompt=False, **{**tok.special_tokens_map, **kwargs})
        assert rendered[0] == text, f"{name}: render_jinja_template text differs"
        spans = [list(x) for x in gen_indices[0]]
        assert len(spans) == len(assistants), f"{name}: {len(spans)} generation blocks"
        if train_on == "last-assistant":
            spans = spans[-1:]
        hf_masks = tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                           return_assistant_tokens_mask=True, chat_template=template,
                                           **kwargs)["assistant_masks"]
    mask = overlap_mask(enc["offset_mapping"], spans)
    if hf_masks is not None and train_on == "all-assistant":
        assert mask == list(hf_masks), f"{name}: overlap mask != transformers assistant_masks"
    cum = byte_offsets(text)
    return {"name": name, "tokenizer": folder, "template": template, "messages": messages,
            "kwargs": kwargs, "train_on": train_on, "text": text, "ids": list(ids),
            "spans": [[cum[s], cum[e]] for s, e in spans], "mask": mask,
            "hf_assistant_masks": None if hf_masks is None else list(hf_masks)}


def bracketed(case):
    """The text with ⟦ at each span start and ⟧ at each end (spans are bytes, so work in bytes)."""
    data = case["text"].encode("utf-8")
    marks = sorted([(e, 0) for _, e in case["spans"]] + [(s, 1) for s, _ in case["spans"]])
    out, pos = [], 0
    for at, kind in marks:
        out += [data[pos:at], "⟦⟧"[1 - kind].encode()]
        pos = at
    return b"".join(out + [data[pos:]]).decode("utf-8")


def main() -> int:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output JSON file")
    ap.add_argument("--tokenizers-root", default=os.path.join(repo, "..", "shared", "tokenizers"))
    ap.add_argument("--show", action="store_true", help="print a few renderings with spans bracketed to stderr")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    t0 = time.time()
    root = os.path.abspath(args.tokenizers_root)
    folders = sorted(os.path.join(root, d) for d in os.listdir(root)
                     if os.path.isfile(os.path.join(root, d, "tokenizer_config.json")))
    if not folders:
        print(f"no tokenizer folders under {root}", file=sys.stderr)
        return 1
    cases, skipped = [], []
    runs = []  # (folder, template, kwargs variants)
    for folder in folders:
        variants = [{"enable_thinking": True}, {"enable_thinking": False}] \
            if os.path.basename(folder) == "qwen3" else [{}]
        runs.append((folder, None, variants))
    gen_folder = os.path.join(root, "qwen2_5")
    if gen_folder in folders:
        runs.append((gen_folder, GENERATION_TEMPLATE, [{}]))
    for folder, template, variants in runs:
        tok = AutoTokenizer.from_pretrained(folder)
        for name, messages in CONVERSATIONS:
            for kwargs in variants:
                for train_on in TRAIN_ON:
                    try:
                        extra = {} if template is None else {"chat_template": template}
                        tok.apply_chat_template(messages, tokenize=False, **extra, **kwargs)
                    except Exception as e:  # noqa: BLE001 - the template refuses this shape
                        entry = {"tokenizer": folder, "name": name, "error": f"{type(e).__name__}: {e}"}
                        if entry not in skipped:
                            skipped.append(entry)
                        continue
                    cases.append(make_case(tok, folder, name, messages, kwargs, train_on, template))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"cases": cases, "skipped": skipped}, f, ensure_ascii=True)

    if args.show:
        want = [("qwen3", "single_turn", {"enable_thinking": True}), ("qwen3", "single_turn", {"enable_thinking": False}),
                ("llama3_1", "multi_turn", {})]
        for base, name, kwargs in want:
            for c in cases:
                if (os.path.basename(c["tokenizer"]) == base and c["name"] == name and c["kwargs"] == kwargs
                        and c["template"] is None and c["train_on"] == "all-assistant"):
                    print(f"--- {base} {name} {kwargs}\n{bracketed(c)}", file=sys.stderr)
    per = {}
    for c in cases:
        key = os.path.basename(c["tokenizer"]) + ("+generation-template" if c["template"] else "")
        per[key] = per.get(key, 0) + 1
    print(f"{len(cases)} cases {per}, {len(skipped)} skipped, {time.time() - t0:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
