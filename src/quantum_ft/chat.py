"""`python -m quantum_ft.chat [RUN_DIR] [--model NAME] [--prompt TEXT]`: talk to a base model or a trained
run (base + adapter). With --prompt it answers once and exits; otherwise it is an interactive chat
(`/reset` clears the history, `/exit` or Ctrl-D leaves)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from transformers import TextStreamer

from quantum_ft.models.build import build_model
from quantum_ft.utils.config import compose_config
from quantum_ft.utils.text import Messages, greedy_generate, render_prompt


@torch.no_grad()
def reply(model: torch.nn.Module, tokenizer: Any, messages: Messages, max_new_tokens: int, stream: bool) -> str:
    """A greedy reply to a conversation, streamed to the terminal as it is generated when `stream`."""
    ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False).input_ids
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    (answer,) = greedy_generate(model, tokenizer, [ids], max_new_tokens, streamer=streamer)
    return tokenizer.decode(answer, skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantum_ft.chat", description=__doc__)
    parser.add_argument("run_dir", nargs="?", help="a training run's output directory (omit for a base model)")
    parser.add_argument("--model", default="smollm2_135m", help="base model config name when no run_dir")
    parser.add_argument("--prompt", help="answer this one prompt and exit")
    parser.add_argument("--system", help="an optional system message")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)

    cfg = compose_config("eval", [f"model={args.model}"])
    cfg.checkpoint = args.run_dir  # a path as it is: no override grammar to quote it for
    built = build_model(cfg)
    model, tokenizer = built.model.eval(), built.tokenizer
    history = [{"role": "system", "content": args.system}] if args.system else []

    if args.prompt is not None:
        messages = [*history, {"role": "user", "content": args.prompt}]
        print(reply(model, tokenizer, messages, args.max_new_tokens, stream=False))
        return
    print("Chat (/reset clears history, /exit quits)")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            break
        if line in {"/exit", "/quit"}:
            break
        if line == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        sys.stdout.write("bot> ")
        answer = reply(model, tokenizer, history, args.max_new_tokens, stream=True)
        history.append({"role": "assistant", "content": answer})


if __name__ == "__main__":
    main()
