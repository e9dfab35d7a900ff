"""Pictures of what the gliner components wrote on a Doc, drawn by displaCy, in one HTML page.

For each doc, up to three figures, each only when the doc has something to show:

* entities (``doc.ents``) in displaCy's ``ent`` style, with the linker's ``kb_id`` as a link when a
  ``kb_url_template`` is given;
* every decoded span of the span group (nested ones included) in displaCy's ``span`` style;
* relations (``doc._.relations``) as labelled arcs. spaCy has no relation style, so the arcs are
  drawn by displaCy's dependency renderer: each relation argument is collapsed into one unit that
  carries its entity label, and every relation becomes an arc from its head to its tail. A table
  under the arcs lists every relation with its score, including those whose two arguments share a
  unit (one nested in the other) and so cannot be an arc.

The page needs no network: displaCy's markup is inline, and the style sheet is this module's.
"""
from __future__ import annotations

import hashlib
import html
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spacy import displacy
from spacy.tokens import Doc, Span

from .doc_relations import get_relations

PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem; color: #222; }}
section.gliner-doc {{ border-top: 1px solid #ddd; padding: 1rem 0 2rem; }}
h2.gliner-part {{ font-size: 1rem; text-transform: uppercase; letter-spacing: 1px; color: #666; }}
div.gliner-arcs {{ overflow-x: auto; }}
table.gliner-relations {{ border-collapse: collapse; margin-top: 0.5rem; font-size: 0.9rem; }}
table.gliner-relations td, table.gliner-relations th {{ border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: left; }}
</style>
</head>
<body>
<h1>{title}</h1>
{sections}
</body>
</html>
"""


def label_colors(labels: Iterable[str], colors: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A colour for every label: the caller's first, else a pastel derived from the label's text, so
    zero-shot labels (which displaCy's palette does not know) are told apart and keep their colour
    from page to page."""
    chosen = dict(colors or {})
    for label in labels:
        if label not in chosen:
            hue = int(hashlib.sha1(label.encode("utf-8")).hexdigest()[:4], 16) % 360
            chosen[label] = f"hsl({hue}, 70%, 80%)"
    return chosen


def relation_arcs(doc: Doc, relations: Optional[Sequence] = None) -> Tuple[Dict, List[Tuple[Span, Span, str, float, bool]]]:
    """displaCy's manual dependency input for the doc's relations (``doc._.relations`` unless given),
    and every relation with whether it is drawn as an arc.

    Argument spans are collapsed into units, longest first; a span overlapping a unit already made
    is anchored to the unit holding its first token."""
    relations = [(r.head, r.tail, r.label, float(r.score)) for r in (get_relations(doc) if relations is None else relations)]
    arguments = {(s.start, s.end): s.label_ for head, tail, _, _ in relations for s in (head, tail)}
    unit_of_token = [None] * len(doc)
    units: List[Tuple[int, int, str]] = []
    for start, end in sorted(arguments, key=lambda b: (b[0] - b[1], b[0])):
        if any(unit_of_token[i] is not None for i in range(start, end)):
            continue
        for i in range(start, end):
            unit_of_token[i] = (start, end)
        units.append((start, end, arguments[(start, end)]))
    words, index_of = [], {}
    i = 0
    while i < len(doc):
        if unit_of_token[i] is not None:
            start, end = unit_of_token[i]
            index_of[(start, end)] = len(words)
            words.append({"text": doc[start:end].text, "tag": arguments[(start, end)]})
            i = end
        else:
            words.append({"text": doc[i].text, "tag": ""})
            i += 1

    def unit_index(span: Span) -> int:
        return index_of[unit_of_token[span.start]]

    arcs, listed = [], []
    for head, tail, label, score in relations:
        h, t = unit_index(head), unit_index(tail)
        drawn = h != t
        if drawn:
            arcs.append({"start": min(h, t), "end": max(h, t), "label": label, "dir": "right" if h < t else "left"})
        listed.append((head, tail, label, score, drawn))
    return {"words": words, "arcs": arcs}, listed


def _relation_table(listed) -> str:
    rows = "".join(
        f'<tr class="gliner-relation-row" data-drawn="{str(drawn).lower()}"><td>{html.escape(head.text)}</td>'
        f"<td>{html.escape(label)}</td><td>{html.escape(tail.text)}</td><td>{score:.3f}</td>"
        f'<td>{"arc" if drawn else "nested arguments: listed only"}</td></tr>'
        for head, tail, label, score, drawn in listed
    )
    return (
        '<table class="gliner-relations"><tr><th>head</th><th>relation</th><th>tail</th><th>score</th>'
        f"<th>drawn as</th></tr>{rows}</table>"
    )


def render_doc(doc: Doc, index: int = 0, *, spans_key: str = "sc", kb_url_template: Optional[str] = None,
               colors: Optional[Dict[str, str]] = None) -> str:
    """The figures of one doc as an HTML ``<section>``."""
    group = doc.spans.get(spans_key) if spans_key in doc.spans else None
    labels = {e.label_ for e in doc.ents} | ({s.label_ for s in group} if group is not None else set())
    relations = get_relations(doc)
    labels |= {s.label_ for r in relations for s in (r.head, r.tail) if s.label_}
    palette = label_colors(sorted(labels), colors)
    parts = [f'<section class="gliner-doc" data-doc="{index}">']
    if doc.ents:
        options = {"colors": palette, "kb_url_template": kb_url_template}
        parts.append('<h2 class="gliner-part">Entities</h2>')
        parts.append(displacy.render(doc, style="ent", options=options, page=False, jupyter=False))
    if group is not None and len(group):
        options = {"spans_key": spans_key, "colors": palette, "kb_url_template": kb_url_template}
        parts.append(f'<h2 class="gliner-part">Spans in doc.spans[{html.escape(repr(spans_key))}]</h2>')
        parts.append(displacy.render(doc, style="span", options=options, page=False, jupyter=False))
    if relations:
        parsed, listed = relation_arcs(doc, relations)
        parts.append('<h2 class="gliner-part">Relations</h2>')
        if parsed["arcs"]:
            svg = displacy.render(parsed, style="dep", manual=True, page=False, jupyter=False,
                                  options={"compact": True, "distance": 110, "offset_x": 40})
            parts.append(f'<div class="gliner-arcs">{svg}</div>')
        parts.append(_relation_table(listed))
    if len(parts) == 1:
        parts.append(f'<p class="gliner-empty">{html.escape(doc.text[:200])} (nothing found)</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render(docs: Union[Doc, Sequence[Doc]], *, spans_key: str = "sc", kb_url_template: Optional[str] = None,
           colors: Optional[Dict[str, str]] = None, title: str = "spacy-gliner", page: bool = True) -> str:
    """HTML for one doc or several: a whole self-contained page (``page=True``) or the sections
    alone, to embed in a report."""
    if isinstance(docs, Doc):
        docs = [docs]
    docs = list(docs)
    if not all(isinstance(doc, Doc) for doc in docs):
        raise TypeError("render takes a spaCy Doc or a list of Docs; run the pipeline first: render(nlp(text))")
    sections = "\n".join(
        render_doc(doc, i, spans_key=spans_key, kb_url_template=kb_url_template, colors=colors) for i, doc in enumerate(docs)
    )
    if not page:
        return sections
    lang = docs[0].lang_ if docs else "en"
    return PAGE.format(lang=html.escape(lang), title=html.escape(title), sections=sections)


def read_texts(source: str, text_field: str = "text") -> List[str]:
    """The texts to draw: a JSONL file's ``text_field`` values, a text file's non-empty lines, or the
    argument itself as one text."""
    path = Path(source)
    if not path.is_file():
        return [source]
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise ValueError(f"{path}:{number}: no string field {text_field!r}; set --text-field")
            texts.append(record[text_field])
        return texts
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def serve_page(markup: str, host: str = "0.0.0.0", port: int = 5002) -> None:
    """Serve one page until interrupted, as ``displacy.serve`` does."""
    from wsgiref import simple_server

    body = markup.encode("utf-8")

    def app(environ, start_response):
        start_response("200 OK", [("Content-type", "text/html; charset=utf-8")])
        return [body]

    with simple_server.make_server(host, port, app) as server:
        print(f"Serving on http://{host}:{port} (Ctrl-C to stop)", file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def visualize(pipeline: str, source: str, output: Optional[str] = None, *, serve: bool = False, port: int = 5002,
              text_field: str = "text", spans_key: str = "sc", kb_url_template: Optional[str] = None) -> str:
    """Run a saved pipeline (directory or package name) over a text or a file and draw the result:
    written to ``output`` when given, served on ``port`` when ``serve``; the HTML is returned."""
    import spacy

    nlp = spacy.load(pipeline)
    docs = list(nlp.pipe(read_texts(source, text_field)))
    markup = render(docs, spans_key=spans_key, kb_url_template=kb_url_template, title=f"spacy-gliner: {pipeline}")
    if output:
        Path(output).write_text(markup, encoding="utf-8")
        print(f"{len(docs)} docs drawn -> {output}", file=sys.stderr)
    if serve:
        serve_page(markup, port=port)
    return markup
