"""Multiple-choice exam data (MMLU, CMMLU, C-Eval) read into one shape: subjects with dev (few-shot) questions
and evaluated questions.

All three ship as one CSV per subject and split (`<split>/<subject>_<split>.csv` or `<split>/<subject>.csv`,
in a folder or a zip); MMLU's have no header, CMMLU's and C-Eval's do. One reader takes them all. MMLU is vendored
(quantum_ft/resources/mmlu.zip); CMMLU and C-Eval come from a local copy or the Hugging Face hub.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[str, ...]
    answer: str  # one of LETTERS


@dataclass
class Subject:
    name: str
    display: str
    category: str
    dev: list[Question] = field(default_factory=list)
    eval: list[Question] = field(default_factory=list)


class EvalDataError(ValueError):
    """Evaluation data that cannot be read, with where and how to fix it."""


def _rows(text: str, where: str) -> list[Question]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    head = [c.strip().lower() for c in rows[0]]
    if "question" in head:  # CMMLU / C-Eval: a header names the columns
        col = {name: head.index(name) for name in ("question", "a", "b", "c", "d", "answer") if name in head}
        missing = {"question", "a", "b", "c", "d", "answer"} - set(col)
        if missing:
            raise EvalDataError(f"{where}: the header lacks the columns {sorted(missing)}")
        body = rows[1:]
    else:  # MMLU: question, A, B, C, D, answer
        col = dict(zip(("question", "a", "b", "c", "d", "answer"), range(6)))
        body = rows
    out = []
    for line, row in enumerate(body, start=2 if body is not rows else 1):
        try:
            answer = row[col["answer"]].strip().upper()
            question = Question(row[col["question"]], tuple(row[col[k]] for k in "abcd"), answer)
        except IndexError:
            raise EvalDataError(f"{where}:{line}: expected question, A-D and answer columns, got {row!r}") from None
        if answer not in LETTERS:
            raise EvalDataError(f"{where}:{line}: the answer {answer!r} is not one of {', '.join(LETTERS)}")
        out.append(question)
    return out


class _Source:
    """The files of a folder or a zip archive, by their path relative to the split folders' parent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and zipfile.is_zipfile(path):
            archive = zipfile.ZipFile(path)
            self.files = {n: archive for n in archive.namelist() if n.endswith(".csv")}
        elif path.is_dir():
            self.files = {str(p.relative_to(path)): None for p in path.rglob("*.csv")}
        else:
            raise EvalDataError(f"{path} is neither a folder nor a zip archive of per-subject CSV files")

    def split(self, split: str) -> dict[str, str]:
        """subject -> file name, for the CSVs inside a `<split>/` folder."""
        found = {}
        for name in self.files:
            parts = Path(name).parts
            if len(parts) >= 2 and parts[-2] == split:
                found[re.sub(rf"_{split}$", "", Path(name).stem)] = name
        return found

    def read(self, name: str) -> str:
        archive = self.files[name]
        data = archive.read(name) if archive is not None else (self.path / name).read_bytes()
        return data.decode("utf-8-sig")


def load_local(
    path: str | Path,
    eval_split: str,
    mapping: dict[str, dict[str, str]] | None = None,
    subjects: list[str] | None = None,
    max_samples: int | None = None,
    dev_split: str = "dev",
) -> list[Subject]:
    """Subjects from a folder or zip holding `<dev_split>/` and `<eval_split>/` CSVs."""
    source = _Source(Path(path).expanduser())
    dev, evaluated = source.split(dev_split), source.split(eval_split)
    if not evaluated:
        raise EvalDataError(f"{path}: no CSV files under a '{eval_split}/' folder (splits are dev/val/test)")
    unknown = sorted(set(subjects or []) - set(evaluated))
    if unknown:
        raise EvalDataError(f"{path}: unknown subjects {unknown}; available: {', '.join(sorted(evaluated))}")
    out = []
    for name in sorted(subjects or evaluated):
        info = (mapping or {}).get(name, {})
        questions = _rows(source.read(evaluated[name]), f"{path}:{evaluated[name]}")
        shots = _rows(source.read(dev[name]), f"{path}:{dev[name]}") if name in dev else []
        out.append(
            Subject(
                name=name,
                display=info.get("name", name.replace("_", " ")),
                category=info.get("category", "all"),
                dev=shots,
                eval=questions[:max_samples] if max_samples else questions,
            )
        )
    return out


def load_mapping(path: str | Path | None) -> dict[str, dict[str, str]]:
    return json.loads(Path(path).read_text()) if path else {}


HUB_DATASETS = {"cmmlu": ("haonan-li/cmmlu", "dev", "test"), "ceval": ("ceval/ceval-exam", "dev", "val")}


def load_hub(task: str, eval_split: str | None, subjects: list[str] | None, max_samples: int | None) -> list[Subject]:
    """CMMLU / C-Eval from the Hugging Face hub (one dataset config per subject); a clear error offline."""
    import datasets

    repo, dev_split, default_split = HUB_DATASETS[task]
    try:
        names = subjects or datasets.get_dataset_config_names(repo)
        out = []
        for name in sorted(names):
            ds = datasets.load_dataset(repo, name)
            rows = {split: [{k.lower(): v for k, v in r.items()} for r in ds[split]] for split in ds}

            def questions(split: str, rows=rows) -> list[Question]:
                return [
                    Question(r["question"], tuple(r[k] for k in "abcd"), str(r["answer"]).strip().upper())
                    for r in rows[split]
                ]

            evaluated = questions(eval_split or default_split)
            out.append(
                Subject(name, name.replace("_", " "), "all", questions(dev_split), evaluated[: max_samples or None])
            )
        return out
    except Exception as err:  # offline, unknown subject, changed dataset layout
        raise EvalDataError(
            f"Could not load {task} from the Hugging Face hub ({repo}): {type(err).__name__}: {err}\n"
            f"Without network, download it elsewhere and point eval.{task}.path at the folder or zip holding its "
            f"dev/ and {eval_split or default_split}/ CSV files (one per subject)."
        ) from err
