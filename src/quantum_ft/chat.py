"""`python -m quantum_ft.chat [RUN_DIR] [--model NAME] [--prompt TEXT]`: talk to a base model or a trained
run (base + adapter). With --prompt it answers once and exits; otherwise it is an interactive chat
(`/reset` clears the history, `/exit` or Ctrl-D leaves)."""

from __future__ import annotations

import argparse
import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import TextStreamer

from quantum_ft.utils.artifact import load_trained
from quantum_ft.utils.config import conf_dir


def load_base(model_name: str) -> tuple[torch.nn.Module, object]:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model_name}", "paths.output_dir=."])
    source = instantiate(cfg.model)
    return source.load_model(), source.load_tokenizer()


@torch.no_grad()
def reply(model, tokenizer, messages: list[dict[str, str]], max_new_tokens: int, stream: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        streamer=streamer,
    )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantum_ft.chat", description=__doc__)
    parser.add_argument("run_dir", nargs="?", help="a training run's output directory (omit for a base model)")
    parser.add_argument("--model", default="smollm2_135m", help="base model config name when no run_dir")
    parser.add_argument("--prompt", help="answer this one prompt and exit")
    parser.add_argument("--system", help="an optional system message")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)

    if args.run_dir:
        model, tokenizer, _, _ = load_trained(args.run_dir)
    else:
        model, tokenizer = load_base(args.model)
    model.eval()
    history = [{"role": "system", "content": args.system}] if args.system else []

    if args.prompt is not None:
        print(
            reply(
                model,
                tokenizer,
                [*history, {"role": "user", "content": args.prompt}],
                args.max_new_tokens,
                stream=False,
            )
        )
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
