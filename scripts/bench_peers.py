"""nlpkit's exported file against what a user would pick instead, measured side by side on the same data.

Issue 17's peers: spaCy 3.8 (its ``efficiency`` configs: the bag-of-words text classifier, the
hash-embedding CNN + transition-based NER) and fastText (supervised, word bigrams). They are optional
comparisons, not project dependencies: they live in their own virtual environment (``--peers-venv``,
created and filled from PyPI on first use) and run in a worker process of it that this script drives
over a pipe, so nothing of theirs is imported here.

    python scripts/bench_peers.py doc --run-dir RUN_SST2     # doc_cls run (e.g. experiment=sst2_glue)
    python scripts/bench_peers.py ner --run-dir RUN_CONLL    # tagging run (e.g. experiment=conll03)

What it does, for a run exported by nlpkit (``export/model.onnx``; exported first if missing):

1. Reads the run's own train / val / test splits (its config's paths) with nlpkit's readers, and hands
   the same examples to the peers, which train on train, select on val (spaCy's own ``spacy train``
   loop; fastText has no selection) and predict test. Accuracy (doc) or micro span F1 (ner, conlleval's
   FB1 over words, BIO) is scored here by the same code for every system.
2. Single requests, one thread: each test text (raw string, each system's own tokenizer) goes to every
   system in turn, the order rotating per text, ``--repeats`` times. Each system's time is taken inside
   its own process around its predict call only (the pipe is not timed), so the worker costs the peers
   nothing. P50/P90/P99 per system; the P50 ratio to nlpkit (min/median over repeats).
3. Batches: ``--batch-size`` texts per call, interleaved the same way (spaCy ``nlp.pipe``; fastText one
   call per text, it has no batch API; nlpkit ``OnnxPredictor.predict(..., batch_size=...)``, two threads).

Times on a shared machine move with its load: read the ratios (printed with the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: what the peers' environment gets (spaCy's efficiency pipelines need no downloaded model)
PEER_PACKAGES = ("spacy==3.8.*", "fasttext-wheel")
DEFAULT_VENV = Path(".cache/peers-venv")
NLPKIT = "nlpkit_onnx"


# ============================================================================ worker (peers' venv)
def worker_main() -> None:
    """Line protocol on stdin/stdout, one JSON object each way per request (the peers' side)."""
    systems: dict[str, object] = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # spaCy's training prints its table: keep the protocol stream clean
    for line in sys.stdin:
        request = json.loads(line)
        command = request["cmd"]
        try:
            if command == "train":
                systems[request["name"]] = system = PEER_SYSTEMS[request["kind"]](request)
                reply = {"train_s": system.train_s, "settings": system.settings}
            elif command == "predict":
                reply = {"predictions": systems[request["name"]].predict(request["texts"])}
            elif command == "time":
                system = systems[request["name"]]
                start = time.perf_counter()
                system.single(request["text"])
                reply = {"ms": (time.perf_counter() - start) * 1000.0}
            elif command == "batch":
                system = systems[request["name"]]
                start = time.perf_counter()
                system.batch(request["texts"], request["batch_size"])
                reply = {"s": time.perf_counter() - start}
            else:
                reply = {"error": f"unknown command {command!r}"}
        except Exception as error:  # reported to the driver, which stops with it
            reply = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class FastTextDoc:
    """fastText supervised classifier (word bigrams), trained on the run's train split."""

    def __init__(self, request: dict):
        import fasttext

        data = Path(request["data_dir"])
        self.settings = {"epoch": 25, "wordNgrams": 2, "lr": 0.5, "thread": 2, "dim": 100}
        start = time.perf_counter()
        self.model = fasttext.train_supervised(
            input=str(data / "fasttext.train"), verbose=0, seed=0, **self.settings
        )
        self.train_s = time.perf_counter() - start

    def single(self, text: str):
        # the C++ call under fastText's own predict(), whose numpy-1 array code fails on numpy 2
        return self.model.f.predict(text.replace("\n", " "), 1, 0.0, "strict")

    def batch(self, texts: list[str], batch_size: int) -> None:
        for text in texts:
            self.single(text)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.single(text)[0][1].removeprefix("__label__") for text in texts]


class SpacyPipeline:
    """A spaCy pipeline from ``spacy init config --optimize efficiency``, trained by ``spacy train``
    (its own loop, evaluation on val, best model kept) on DocBins of the run's splits."""

    component = ""

    def __init__(self, request: dict):
        import spacy
        from spacy.cli.init_config import init_config
        from spacy.cli.train import train

        data = Path(request["data_dir"])
        config = init_config(lang="en", pipeline=[self.component], optimize="efficiency", gpu=False)
        config_path = data / f"{self.component}.cfg"
        config.to_disk(config_path)
        output = data / f"spacy_{self.component}"
        self.settings = {
            "config": f"init config --pipeline {self.component} --optimize efficiency",
            "training.max_steps": request["max_steps"],
            "training.patience": request["patience"],
        }
        overrides = {
            "paths.train": str(data / f"{self.component}.train.spacy"),
            "paths.dev": str(data / f"{self.component}.val.spacy"),
            "training.max_steps": request["max_steps"],
            "training.patience": request["patience"],
            "system.seed": 0,
        }
        start = time.perf_counter()
        train(config_path, output, use_gpu=-1, overrides=overrides)
        self.train_s = time.perf_counter() - start
        self.nlp = spacy.load(output / "model-best")

    def single(self, text: str):
        return self.nlp(text)

    def batch(self, texts: list[str], batch_size: int) -> None:
        for _ in self.nlp.pipe(texts, batch_size=batch_size):
            pass


class SpacyTextcat(SpacyPipeline):
    component = "textcat"

    def predict(self, texts: list[str]) -> list[str]:
        return [max(doc.cats, key=doc.cats.get) for doc in self.nlp.pipe(texts, batch_size=256)]


class SpacyNer(SpacyPipeline):
    component = "ner"

    def predict(self, sentences: list[list[str]]) -> list[list[str]]:
        """BIO tags of pre-tokenized sentences (the gold words, so tags align with the gold ones)."""
        from spacy.tokens import Doc

        tagged = []
        for words in sentences:
            doc = Doc(self.nlp.vocab, words=words)
            for _, process in self.nlp.pipeline:
                doc = process(doc)
            tags = ["O"] * len(words)
            for ent in doc.ents:
                tags[ent.start] = f"B-{ent.label_}"
                for i in range(ent.start + 1, ent.end):
                    tags[i] = f"I-{ent.label_}"
            tagged.append(tags)
        return tagged


PEER_SYSTEMS = {"fasttext_doc": FastTextDoc, "spacy_textcat": SpacyTextcat, "spacy_ner": SpacyNer}


# ============================================================================ driver (project venv)
def ensure_peers_venv(venv: Path) -> Path:
    """The peers' python, creating the environment from PyPI on first use."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import spacy, fasttext"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing the peers into {venv} ({', '.join(PEER_PACKAGES)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


class Worker:
    """The peers' process: one JSON request, one JSON reply."""

    def __init__(self, python: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [str(python), __file__, "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the peers' worker died (exit {self.proc.wait()}); its output is above")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"peer {request.get('name')}: {reply['error']}")
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def percentiles(samples: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(samples)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}


def write_doc_data(data_dir: Path, splits: dict) -> None:
    """fastText's ``__label__X text`` lines and spaCy DocBins (built in the worker from JSONL)."""
    with open(data_dir / "fasttext.train", "w", encoding="utf-8") as f:
        for text, label in splits["train"]:
            f.write(f"__label__{label} {text.replace(chr(10), ' ')}\n")
    labels = sorted({label for _, label in splits["train"]})
    for split in ("train", "val"):
        with open(data_dir / f"textcat.{split}.jsonl", "w", encoding="utf-8") as f:
            for text, label in splits[split]:
                f.write(
                    json.dumps({"text": text, "cats": {name: float(name == label) for name in labels}}) + "\n"
                )


def write_ner_data(data_dir: Path, splits: dict) -> None:
    for split in ("train", "val"):
        with open(data_dir / f"ner.{split}.jsonl", "w", encoding="utf-8") as f:
            for words, tags in splits[split]:
                f.write(json.dumps({"words": list(words), "tags": list(tags)}) + "\n")


def build_docbins(python: Path, data_dir: Path, component: str) -> None:
    """The JSONL files as spaCy DocBins, built by the peers' python (no spaCy here)."""
    script = f"""
import json, spacy
from spacy.tokens import Doc, DocBin
nlp = spacy.blank("en")
for split in ("train", "val"):
    db = DocBin()
    for line in open({str(data_dir)!r} + f"/{component}.{{split}}.jsonl", encoding="utf-8"):
        row = json.loads(line)
        if "words" in row:
            doc = Doc(nlp.vocab, words=row["words"], ents=row["tags"])
        else:
            doc = nlp.make_doc(row["text"])
            doc.cats = row["cats"]
        db.add(doc)
    db.to_disk({str(data_dir)!r} + f"/{component}.{{split}}.spacy")
"""
    subprocess.run([str(python), "-c", script], check=True)


def interleave(systems: dict, texts: list[str]) -> dict[str, list[float]]:
    """Every text to every system, the order rotating per text; each time taken inside its process."""
    names = list(systems)
    samples = {name: [] for name in names}
    for i, text in enumerate(texts):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            samples[name].append(systems[name]("time", text))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["doc", "ner", "worker"])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--requests", type=int, default=1000, help="single requests per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--spacy-max-steps", type=int, default=5000, help="spacy train's training.max_steps")
    parser.add_argument("--spacy-patience", type=int, default=1600, help="spacy train's training.patience")
    args = parser.parse_args()
    if args.mode == "worker":
        worker_main()
        return
    if args.run_dir is None:
        parser.error("--run-dir is required")
    run(args)


def run(args) -> None:
    import numpy as np

    from nlpkit.api import load_run_config
    from nlpkit.metrics.spans import span_f1
    from nlpkit.serving.onnx_predictor import OnnxPredictor

    cfg = load_run_config(args.run_dir)
    task = str(cfg.task.name)
    wanted = {"doc": "doc_cls", "ner": "tagging"}[args.mode]
    if task != wanted:
        raise SystemExit(f"{args.run_dir} is a task={task} run; mode {args.mode} needs a task={wanted} run")
    model_path = args.run_dir / "export" / "model.onnx"
    if not model_path.is_file():
        from nlpkit.export import export_run

        export_run(args.run_dir)
    from nlpkit.tasks import get_task

    # the run's own splits, read as its training read them (a held-out val if it had no val file)
    raw = get_task(task).datamodule(cfg.data, args.run_dir).read_splits(need_train=True)
    if "test" not in raw:
        raise SystemExit(f"{args.run_dir}: the run has no test split (data.test_path)")
    if args.mode == "doc":
        splits = {s: [(ex.text, ex.labels[0]) for ex in raw[s]] for s in ("train", "val", "test")}
        test_inputs = test_texts = [text for text, _ in splits["test"]]
        peers = {"fasttext_bigrams": "fasttext_doc", "spacy_textcat_bow": "spacy_textcat"}
    else:
        splits = {s: [(sent.tokens, sent.tags) for sent in raw[s]] for s in ("train", "val", "test")}
        test_inputs = [list(words) for words, _ in splits["test"]]
        test_texts = [" ".join(words) for words in test_inputs]
        peers = {"spacy_ner": "spacy_ner"}

    python = ensure_peers_venv(args.peers_venv)
    worker = Worker(python)
    onnx_1 = OnnxPredictor(model_path, threads=1)
    onnx_2 = OnnxPredictor(model_path, threads=2)
    with tempfile.TemporaryDirectory(prefix="nlpkit-peers-") as tmp:
        data_dir = Path(tmp)
        if args.mode == "doc":
            write_doc_data(data_dir, splits)
            build_docbins(python, data_dir, "textcat")
        else:
            write_ner_data(data_dir, splits)
            build_docbins(python, data_dir, "ner")
        trained = {}
        for name, kind in peers.items():
            print(f"training {name} ...", flush=True)
            trained[name] = worker.ask(
                cmd="train", name=name, kind=kind, data_dir=str(data_dir),
                max_steps=args.spacy_max_steps, patience=args.spacy_patience,
            )  # fmt: skip

        # ---- quality on test, scored here for every system
        quality: dict[str, float] = {}
        if args.mode == "doc":
            gold = [label for _, label in splits["test"]]
            predicted = {NLPKIT: [p["label"] for p in onnx_2.predict(test_texts, batch_size=args.batch_size)]}
            for name in peers:
                predicted[name] = worker.ask(cmd="predict", name=name, texts=test_texts)["predictions"]
            for name, labels in predicted.items():
                quality[name] = float(np.mean([a == b for a, b in zip(labels, gold)]))
        else:
            gold = [list(tags) for _, tags in splits["test"]]
            ours = onnx_2.predict(test_texts, batch_size=args.batch_size)
            predicted = {NLPKIT: [p["tags"] for p in ours]}
            for name in peers:
                predicted[name] = worker.ask(cmd="predict", name=name, texts=test_inputs)["predictions"]
            for name, tags in predicted.items():
                quality[name] = span_f1(gold, tags)

        # ---- single requests, one thread, interleaved
        def call(name: str):
            if name == NLPKIT:

                def ours(command: str, payload):
                    start = time.perf_counter()
                    if command == "time":
                        onnx_1.predict([payload])
                    else:
                        onnx_2.predict(payload, batch_size=args.batch_size)
                    return (time.perf_counter() - start) * (1000.0 if command == "time" else 1.0)

                return ours

            def theirs(command: str, payload):
                if command == "time":
                    return worker.ask(cmd="time", name=name, text=payload)["ms"]
                return worker.ask(cmd="batch", name=name, texts=payload, batch_size=args.batch_size)["s"]

            return theirs

        systems = {name: call(name) for name in [NLPKIT, *peers]}
        requests = (test_texts * (args.requests // len(test_texts) + 1))[: args.requests]
        interleave(systems, requests[:100])  # warm-up
        load_before = os.getloadavg()[0]
        repeats = [
            {n: percentiles(s) for n, s in interleave(systems, requests).items()} for _ in range(args.repeats)
        ]
        # ---- batches, interleaved chunk by chunk
        chunk = args.batch_size * 8
        throughput = []
        for _ in range(args.repeats):
            seconds = dict.fromkeys(systems, 0.0)
            names = list(systems)
            for i, start in enumerate(range(0, len(test_texts), chunk)):
                texts = test_texts[start : start + chunk]
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    seconds[name] += systems[name]("batch", texts)
            throughput.append({name: len(test_texts) / s for name, s in seconds.items()})
        load_after = os.getloadavg()[0]
    worker.close()

    metric = "test accuracy" if args.mode == "doc" else "test span F1"
    print(
        f"\nrun: {args.run_dir} (model {cfg.model.name}); {len(test_texts)} test texts; {len(requests)} single "
        f"requests x {args.repeats} repeats, interleaved; load average {load_before:.1f} -> {load_after:.1f}"
    )
    print(
        f"{'system':18} {metric:>14} {'P50 ms':>8} {'P90 ms':>8} {'P99 ms':>8} {'P50/nlpkit min-med':>19} {'batch sent/s':>13} {'train s':>8}"
    )
    summary = {"run_dir": str(args.run_dir), "mode": args.mode, "systems": {}}
    for name in systems:
        p = {q: statistics.median(r[name][q] for r in repeats) for q in ("p50", "p90", "p99")}
        ratios = [r[name]["p50"] / r[NLPKIT]["p50"] for r in repeats]
        rate = statistics.median(t[name] for t in throughput)
        train_s = trained.get(name, {}).get("train_s")
        print(
            f"{name:18} {quality[name] * 100:14.2f} {p['p50']:8.3f} {p['p90']:8.3f} {p['p99']:8.3f} "
            f"{min(ratios):9.2f}-{statistics.median(ratios):<9.2f} {rate:13,.0f} "
            f"{'' if train_s is None else f'{train_s:8.0f}'}"
        )
        summary["systems"][name] = {
            "quality": quality[name], **p, "p50_ratio_to_nlpkit": ratios, "batch_sentences_per_s": rate,
            "train_s": train_s, "settings": trained.get(name, {}).get("settings"),
        }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
