"""Copy an evaluation run's results here and print the README's tables.

python -m quantum_ft.eval hydra.run.dir=/tmp/mmlu_full        # the run (about an hour on 2 CPU cores)
python experiments/mmlu_smollm2/report.py /tmp/mmlu_full      # results.json, results.md, tables
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(run_dir: str) -> None:
    run = Path(run_dir)
    for name in ("results.json", "results.md"):
        shutil.copyfile(run / name, HERE / name)
    mmlu = json.loads((HERE / "results.json").read_text())["mmlu"]
    print(f"overall: {mmlu['accuracy']:.4f} over {mmlu['questions']:,} questions, {mmlu['seconds'] / 60:.1f} min")
    print("answers given:", ", ".join(f"{k} {v}" for k, v in mmlu["predicted_letters"].items()))
    print("\n| category | accuracy | questions |\n|---|---|---|")
    for name, value in mmlu["categories"].items():
        print(f"| {name} | {value['accuracy']:.4f} | {value['questions']:,} |")
    ranked = sorted(mmlu["subjects"].items(), key=lambda kv: kv[1]["accuracy"])
    print("\nweakest:", ", ".join(f"{n} {v['accuracy']:.3f}" for n, v in ranked[:3]))
    print("strongest:", ", ".join(f"{n} {v['accuracy']:.3f}" for n, v in ranked[-3:]))


if __name__ == "__main__":
    main(sys.argv[1])
