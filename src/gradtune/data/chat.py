"""Conversations for instruction tuning.

A row is either a chat, a `messages` list of {role, content} (roles system, user, assistant), or an
alpaca row: an `instruction`, an optional `input` and the `output` to learn, which becomes the chat
[user: instruction (+ input), assistant: output]. The tokenizer's chat template renders the chat
(a tokenizer without one gets PLAIN_TEMPLATE, documented in docs/llm.md), and the tokens of the
assistant's turns are found by rendering the conversation as it grows: everything else (the system
prompt, the user's turns, the template's markup) gets the label -100, so the loss covers the
answers alone.
"""

from __future__ import annotations

import json
from typing import Any

ROLES = ("system", "user", "assistant")
IGNORE = -100

# for a tokenizer that has no chat template (a base model, a tokenizer trained from scratch): one
# header line per turn, the turn's text, and the end-of-text token after each assistant turn, so
# that the model learns where an answer stops
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] | capitalize + ':\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)


def ensure_template(tokenizer: Any) -> Any:
    """The tokenizer, with PLAIN_TEMPLATE if it has no chat template of its own."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_TEMPLATE
    return tokenizer


def _text(value: Any, what: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if not isinstance(value, str):
        raise ValueError(f"the {what} is {type(value).__name__} {value!r}, not text")
    return value


def from_messages(value: Any) -> list[dict[str, str]]:
    """A `messages` cell as a checked conversation; ValueError (the caller names file, line and column)."""
    if isinstance(value, str):  # a CSV cell holding JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("the conversation is not a list of {role, content} messages (nor JSON of one)") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("the conversation is empty; give a list of {role, content} messages")
    chat = []
    for i, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is {type(message).__name__}, not a {{role, content}} object")
        role = message.get("role")
        if role not in ROLES:
            shown = "missing" if role is None else repr(role)
            raise ValueError(f"message {i}: the role is {shown}; use one of {', '.join(ROLES)}")
        content = _text(message.get("content"), f"content of message {i}")
        if role == "assistant" and not content.strip():
            raise ValueError(f"message {i}: the assistant's turn is empty; there is nothing to learn from it")
        chat.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in chat):
        raise ValueError("the conversation has no assistant turn: there is no answer to learn")
    return chat


def from_alpaca(instruction: Any, input_text: Any, output: Any) -> list[dict[str, str]]:
    """An alpaca row as a conversation: the instruction (and input, after a blank line), then the answer."""
    instruction, input_text = _text(instruction, "instruction"), _text(input_text, "input")
    output = _text(output, "output")
    if not instruction.strip():
        raise ValueError("the instruction is empty")
    if not output.strip():
        raise ValueError("the output is empty; there is nothing to learn from the row")
    prompt = instruction + (f"\n\n{input_text}" if input_text.strip() else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def render(tokenizer: Any, chat: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, chat: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant's turns (each with the
    template's end-of-turn markup, so the model learns to stop): a turn's span runs from the end of
    the conversation before it, with the assistant's header, to the end of the conversation with it."""
    full = render(tokenizer, chat)
    spans = []
    for i, message in enumerate(chat):
        if message["role"] != "assistant":
            continue
        before, through = render(tokenizer, chat[:i], generation_prompt=True), render(tokenizer, chat[: i + 1])
        if not (through.startswith(before) and full.startswith(through)):
            raise ValueError("this tokenizer's chat template renders a conversation differently as it grows, so the "
                             "assistant's tokens cannot be told apart; use a tokenizer with a standard template")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_chat(tokenizer: Any, chat: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation, and labels: each assistant token is its own target,
    every other token IGNORE."""
    full, spans = assistant_spans(tokenizer, chat)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [token if any(s <= start < e for s, e in spans) else IGNORE
              for token, (start, _) in zip(enc["input_ids"], enc["offset_mapping"])]
    return list(enc["input_ids"]), labels


def prompt_ids(tokenizer: Any, chat: list[dict[str, str]]) -> list[int]:
    """The token ids that ask for the assistant's next turn (generation)."""
    return list(tokenizer(render(tokenizer, chat, generation_prompt=True), add_special_tokens=False)["input_ids"])
