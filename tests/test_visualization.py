"""spacy_gliner.render and ``python -m spacy_gliner visualize``: entities with their KB links, nested
spans and relation arcs on real CoNLL04 sentences and on a gliner_ner pipeline's output, checked in
the markup and in a real browser (headless Chromium from the Debian packages: the rendered DOM is
measured, and a screenshot is taken)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, Span

import spacy_gliner.components.ner  # noqa: F401  (registers the factory)
from spacy_gliner.doc_relations import set_relations
from spacy_gliner import render
from spacy_gliner.visualization import read_texts, relation_arcs
from support import DATA, crossner_labels, crossner_sentences

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KB_URL = "https://www.wikidata.org/wiki/{}"

# Appended to a copy of the page: after layout, what the browser drew, as JSON in the DOM.
MEASURE = """<pre id="measured"></pre><script>
window.addEventListener("load", () => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const found = (selector, text) => [...document.querySelectorAll(selector)].map((e) => ({text: text(e), box: box(e)}));
  document.getElementById("measured").textContent = JSON.stringify({
    entities: found("mark.entity", (e) => e.firstChild.textContent.trim()),
    links: found("mark.entity a[href]", (e) => e.getAttribute("href")),
    spans: found("div.spans span[style*='z-index: 10']", (e) => e.firstChild.textContent.trim()),
    arcs: found("g.displacy-arrow path.displacy-arc", (e) => e.getAttribute("d")),
    arc_labels: found("g.displacy-arrow textPath.displacy-label", (e) => e.textContent.trim()),
    rows: found("tr.gliner-relation-row", (e) => e.dataset.drawn),
  });
});
</script>"""


def conll04_docs(count=4):
    """CoNLL04 test sentences with their gold entities, a nested span inside each multi-word
    entity, gold relations, and a KB id on every entity."""
    data = json.loads((DATA / "conll04" / "conll04_test.json").read_text())
    picked = [d for d in data if len(d["relations"]) >= 2 and 8 <= len(d["tokens"]) <= 40][:count]
    nlp = spacy.blank("en")
    docs = []
    for number, record in enumerate(picked):
        doc = Doc(nlp.vocab, words=record["tokens"])
        ents = [Span(doc, e["start"], e["end"], label=e["type"], kb_id=f"Q{100 * number + i}")
                for i, e in enumerate(record["entities"])]
        doc.ents = ents
        nested = [Span(doc, e.start, e.start + 1, label="first-word") for e in ents if len(e) > 1]
        doc.spans["sc"] = list(ents) + nested
        entities = record["entities"]
        set_relations(doc, [(entities[r["head"]]["start"], entities[r["head"]]["end"], entities[r["tail"]]["start"],
                             entities[r["tail"]]["end"], r["type"], 1.0) for r in record["relations"]])
        docs.append((doc, record))
    return docs


def browser_measure(page: str, tmp_path: Path) -> dict:
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", measured.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    return json.loads(done.stdout[start:done.stdout.index("</pre>", start)].replace("&quot;", '"').replace("&amp;", "&"))


def test_markup_has_every_entity_link_span_and_relation():
    docs = conll04_docs()
    page = render([doc for doc, _ in docs], kb_url_template=KB_URL)
    assert page.startswith("<!DOCTYPE html>")
    assert not any(fetch in page for fetch in ("src=", "<link", "@import"))  # self-contained: loads nothing
    for doc, record in docs:
        for ent in doc.ents:
            assert ent.text in page and KB_URL.format(ent.kb_id_) in page
        parsed, listed = relation_arcs(doc)
        assert len(listed) == len({(r["head"], r["tail"], r["type"]) for r in record["relations"]})
        assert len(parsed["arcs"]) == sum(drawn for *_, drawn in listed)
    assert page.count('class="gliner-relation-row"') == sum(len(relation_arcs(d)[1]) for d, _ in docs)
    assert render(docs[0][0], page=False).startswith('<section class="gliner-doc"')


def test_relation_arcs_point_from_head_to_tail_over_collapsed_arguments():
    nlp = spacy.blank("en")
    doc = nlp("Steve Jobs founded Apple in Cupertino .")
    doc.ents = [Span(doc, 0, 2, label="Peop"), Span(doc, 3, 4, label="Org"), Span(doc, 5, 6, label="Loc")]
    set_relations(doc, [(0, 2, 3, 4, "Work_For", 0.9), (3, 4, 5, 6, "Located_In", 0.8), (5, 6, 0, 2, "Home_Of", 0.7),
                        (0, 2, 0, 1, "nested", 0.5)])
    parsed, listed = relation_arcs(doc)
    assert [w["text"] for w in parsed["words"]] == ["Steve Jobs", "founded", "Apple", "in", "Cupertino", "."]
    assert [w["tag"] for w in parsed["words"]][0] == "Peop"
    arcs = {a["label"]: a for a in parsed["arcs"]}
    assert arcs["Work_For"] == {"start": 0, "end": 2, "label": "Work_For", "dir": "right"}  # arrowhead on the tail
    assert arcs["Home_Of"] == {"start": 0, "end": 4, "label": "Home_Of", "dir": "left"}
    assert "nested" not in arcs and [drawn for *_, label, _s, drawn in listed if label == "nested"] == [False]
    assert "nested arguments: listed only" in render(doc)


def test_a_doc_with_nothing_found_still_has_its_section():
    doc = spacy.blank("en")("Nothing to see here.")
    page = render([doc])
    assert 'class="gliner-empty"' in page and "Nothing to see here." in page


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"render\(nlp\(text\)\)"):
        render("a plain string")


def test_texts_from_a_jsonl_file_name_a_bad_line(tmp_path):
    good = tmp_path / "texts.jsonl"
    good.write_text('{"body": "One."}\n\n{"body": "Two."}\n')
    assert read_texts(str(good), text_field="body") == ["One.", "Two."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "One."}\n{"text": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no string field 'text'"):
        read_texts(str(bad))
    assert read_texts("Just a sentence.") == ["Just a sentence."]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (./run test installs it)")
def test_browser_draws_every_entity_link_span_and_arc(tmp_path):
    docs = conll04_docs()
    page = render([doc for doc, _ in docs], kb_url_template=KB_URL)
    drawn = browser_measure(page, tmp_path)
    entities = [ent for doc, _ in docs for ent in doc.ents]
    assert [e["text"] for e in drawn["entities"]] == [ent.text for ent in entities]
    assert [e["text"] for e in drawn["links"]] == [KB_URL.format(ent.kb_id_) for ent in entities]
    spans = [span for doc, _ in docs for span in sorted(doc.spans["sc"], key=lambda s: (s.start, -s.end))]
    assert sorted(s["text"] for s in drawn["spans"]) == sorted(s.label_ for s in spans)
    arcs = [label for doc, _ in docs for *_, label, _s, was_drawn in relation_arcs(doc)[1] if was_drawn]
    assert sorted(a["text"] for a in drawn["arc_labels"]) == sorted(arcs) and len(drawn["arcs"]) == len(arcs)
    for kind in ("entities", "spans", "arcs", "arc_labels"):
        assert all(w > 0 and h > 0 for w, h in (d["box"] for d in drawn[kind])), kind  # laid out, visible
    screenshot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={screenshot}", "--window-size=1200,1600", (tmp_path / "measured.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    colours = Image.open(screenshot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # not a blank page: text, marks and arcs in many shades


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (./run test installs it)")
def test_visualize_command_draws_a_saved_pipelines_output(checkpoints, tmp_path):
    from spacy_gliner.visualization import visualize

    nlp = spacy.blank("en")
    nlp.add_pipe("gliner_ner", config={"model": str(checkpoints("uni_markerV0")), "labels": crossner_labels("politics"),
                                       "threshold": 0.3, "nested": True})
    nlp.to_disk(tmp_path / "pipeline")
    texts = tmp_path / "texts.jsonl"
    sentences = crossner_sentences("politics", 3)
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in sentences))
    done = subprocess.run([sys.executable, "-m", "spacy_gliner", "visualize", str(tmp_path / "pipeline"), str(texts),
                           "--output", str(tmp_path / "page.html")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert visualize(str(tmp_path / "pipeline"), str(texts)) == (tmp_path / "page.html").read_text(encoding="utf-8")
    docs = list(nlp.pipe(sentences))
    drawn = browser_measure((tmp_path / "page.html").read_text(encoding="utf-8"), tmp_path)
    assert [e["text"] for e in drawn["entities"]] == [ent.text for doc in docs for ent in doc.ents]
    assert len(drawn["spans"]) == sum(len(doc.spans["sc"]) for doc in docs)
    assert sum(len(doc.spans["sc"]) for doc in docs) > sum(len(doc.ents) for doc in docs) > 0  # nested ones drawn too
