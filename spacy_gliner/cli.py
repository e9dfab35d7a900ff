"""The command line: ``python -m spacy_gliner annotate PIPELINE INPUT OUTPUT [options]``,
``python -m spacy_gliner visualize PIPELINE TEXT_OR_FILE [--output page.html] [--serve]``,
``python -m spacy_gliner export-onnx PIPELINE [--int8]`` and
``python -m spacy_gliner to-listener CHECKPOINT OUTPUT [--labels a,b] [--kb KB]`` (a bi-encoder's text
tower as a shared spaCy ``transformer``, listened to by gliner_ner and/or gliner_linker)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_gliner", description="spacy-gliner commands")
    commands = parser.add_subparsers(dest="command", required=True)
    annotate = commands.add_parser(
        "annotate", help="annotate a corpus with a pipeline, resumably, locally or on Ray",
        description="Annotate every record of INPUT with PIPELINE into the folder OUTPUT, one output shard per "
                    "input shard. Re-running the same command resumes an interrupted run.")
    annotate.add_argument("pipeline", help="saved pipeline directory or installed package name")
    annotate.add_argument("input", help="a JSONL or Parquet file, a folder of .txt (or .jsonl/.parquet) files, or a glob")
    annotate.add_argument("output", help="output folder")
    annotate.add_argument("--format", dest="output_format", choices=["jsonl", "parquet", "docbin"], default="jsonl",
                          help="records as JSONL or Parquet, or Docs as DocBin (.spacy) shards")
    annotate.add_argument("--text-field", default="text", help="JSONL field / Parquet column holding the text")
    annotate.add_argument("--id-field", default="id", help="JSONL field / Parquet column holding the id")
    annotate.add_argument("--shard-size", type=int, default=None,
                          help="records (or text files) per shard; default: one shard per input file (or folder)")
    annotate.add_argument("--batch-size", type=int, default=32, help="documents per model batch (both engines)")
    annotate.add_argument("--threads", type=int, default=None,
                          help="torch threads per worker process or actor (default: torch's locally, "
                               "--cpus-per-worker on Ray); equal values on both engines give byte-identical records")
    annotate.add_argument("--engine", choices=["local", "ray"], default="local")
    local = annotate.add_argument_group("local engine")
    local.add_argument("--n-process", type=int, default=1, help="processes for nlp.pipe")
    local.add_argument("--gpu-id", type=int, default=None, help="run on this GPU (needs cupy)")
    ray = annotate.add_argument_group("ray engine")
    ray.add_argument("--address", default=None,
                     help="cluster to join ('auto' for the one `ray start` runs here, or ray://host:10001); "
                          "default: a new local one")
    ray.add_argument("--workers", type=int, default=1, help="actors, each holding the pipeline")
    ray.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor (needs cupy on the workers)")
    ray.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor")
    annotate.add_argument("--quiet", action="store_true", help="no progress bar")
    visualize = commands.add_parser(
        "visualize", help="draw a pipeline's entities, spans, links and relations as an HTML page",
        description="Run PIPELINE over a text, a JSONL file or a text file (one text per line) and draw what it "
                    "found with displaCy in one self-contained page: written with --output, served with --serve.")
    visualize.add_argument("pipeline", help="saved pipeline directory or installed package name")
    visualize.add_argument("source", help="a text, or a .jsonl file (see --text-field), or a text file")
    visualize.add_argument("--output", default=None, help="write the page here")
    visualize.add_argument("--serve", action="store_true", help="serve the page, as displacy.serve does")
    visualize.add_argument("--port", type=int, default=5002)
    visualize.add_argument("--text-field", default="text", help="the JSONL field holding the text")
    visualize.add_argument("--spans-key", default="sc", help="the span group to draw")
    visualize.add_argument("--kb-url-template", default=None,
                           help="link kb_ids, e.g. 'https://www.wikidata.org/wiki/{}'")
    export = commands.add_parser(
        "export-onnx", help="export a saved pipeline's gliner_ner models to ONNX and switch them to backend onnx",
        description="Export the encoders of every gliner_ner component of the saved pipeline PIPELINE to ONNX, "
                    "into PIPELINE/<component>/onnx, and set 'backend': 'onnx' in its config.cfg: spacy.load then "
                    "runs ONNX Runtime without exporting. Needs: pip install \"spacy-gliner[onnx]\".")
    export.add_argument("pipeline", help="saved pipeline directory")
    export.add_argument("--int8", action="store_true", help="also write int8 (dynamically quantized) files and use them")
    to_listener = commands.add_parser(
        "to-listener", help="a bi-encoder checkpoint as a pipeline [transformer, gliner_ner and/or gliner_linker] "
                            "sharing its text tower",
        description="Write a pipeline whose 'transformer' component (spacy-transformers) holds the text tower of the "
                    "bi-encoder CHECKPOINT and whose gliner_ner (with --labels) and gliner_linker (with --kb; the KB "
                    "is copied into the pipeline) listen to it, so other components can share the same encoder pass.")
    to_listener.add_argument("checkpoint", help="bi-encoder GLiNER checkpoint directory or cached hub id")
    to_listener.add_argument("output", help="pipeline directory to write")
    to_listener.add_argument("--labels", help="entity labels, comma-separated: adds a listening gliner_ner")
    to_listener.add_argument("--kb", help="knowledge base (JSONL, SQLite or KB directory): adds a listening gliner_linker")
    to_listener.add_argument("--lang", default="en", help="language of the blank pipeline")
    to_listener.add_argument("--window", type=int, default=128, help="tokens per transformer span")
    to_listener.add_argument("--stride", type=int, default=96, help="tokens between transformer span starts")
    return parser


def run_export_onnx(args) -> int:
    from pathlib import Path

    import spacy
    from spacy.util import load_config

    directory = Path(args.pipeline)
    config = load_config(directory / "config.cfg")
    names = [name for name, settings in config["components"].items() if settings.get("factory") == "gliner_ner"]
    if not names:
        print(f"export-onnx: {directory} has no gliner_ner component", file=sys.stderr)
        return 2
    settings = {"backend": "onnx", "onnx_quantize": "int8" if args.int8 else None}
    nlp = spacy.load(directory, config={"components": {name: settings for name in names}})
    for name in names:
        nlp.get_pipe(name).export_onnx(directory / name / "onnx")
        for key, value in settings.items():
            config["components"][name][key] = value
        print(f"{name}: ONNX export written to {directory / name / 'onnx'}", file=sys.stderr)
    config.to_disk(directory / "config.cfg")
    return 0


def run_to_listener(args) -> int:
    from .components.listener import build_listener_pipeline

    labels = [label.strip() for label in (args.labels or "").split(",") if label.strip()]
    if not labels and not args.kb:
        print("to-listener: give --labels (a listening gliner_ner), --kb (a listening gliner_linker), or both",
              file=sys.stderr)
        return 2
    nlp = build_listener_pipeline(args.checkpoint, labels, lang=args.lang, window=args.window, stride=args.stride,
                                  kb=args.kb)
    nlp.to_disk(args.output)
    print(f"wrote {args.output}: {', '.join(nlp.pipe_names)}", file=sys.stderr)
    return 0


def run_visualize(args) -> int:
    from .visualization import visualize

    if not args.output and not args.serve:
        print("visualize: give --output page.html, --serve, or both", file=sys.stderr)
        return 2
    visualize(args.pipeline, args.source, args.output, serve=args.serve, port=args.port, text_field=args.text_field,
              spans_key=args.spans_key, kb_url_template=args.kb_url_template)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "visualize":
        return run_visualize(args)
    if args.command == "export-onnx":
        return run_export_onnx(args)
    if args.command == "to-listener":
        return run_to_listener(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .annotate import annotate

    summary = annotate(args.pipeline, args.input, args.output, engine=args.engine, output_format=args.output_format,
                       text_field=args.text_field, id_field=args.id_field, shard_size=args.shard_size,
                       batch_size=args.batch_size, n_process=args.n_process, gpu_id=args.gpu_id, threads=args.threads,
                       address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                       cpus_per_worker=args.cpus_per_worker, show_progress=not args.quiet)
    print(f"{summary.records} records in {len(summary.written)} new shard(s), {len(summary.skipped)} shard(s) "
          f"already finished, {len(summary.rejects)} rejected record(s) (see {summary.output / 'rejects.jsonl'})",
          file=sys.stderr)
    return 0
