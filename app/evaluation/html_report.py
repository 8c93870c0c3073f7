"""evaluate.py's report as one self-contained HTML file: metrics, per-class table, confusion
matrices and the most confident errors as images, with production beside the model when there
is one. Images are inlined (base64 PNG), so the file opens anywhere, offline included, where
W&B's table files hold only references to media in its staging folder."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

WORST_ERRORS = 24  # per split: the misclassified examples the model was surest of
ERROR_IMAGE_SIDE = 96  # pixels: an 8x8 digit is unreadable at its own size
LABEL_ISSUES_SHOWN = 48  # label-issue candidates shown as images (the table and CSV have more)


def figure_png(fig) -> bytes:
    """The matplotlib figure as PNG bytes, rendered once (the report and the W&B run show the same
    bytes) and closed, so a script that makes many does not keep them all open."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def image_png(image: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, 3) image, scaled up (nearest, so pixels stay sharp) to about
    ERROR_IMAGE_SIDE on its longer side."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = max(1, ERROR_IMAGE_SIDE // max(picture.size))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def most_confident_errors(probs: np.ndarray, labels: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Indices of the misclassified examples, the most confident first (ties: lower index first)."""
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)
    order = np.argsort(-probs.max(1)[wrong], kind="stable")
    return wrong[order][:limit]


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render(*, model_ref: str, dataset_ref: str, class_names: list[str], splits: dict, comparison: dict | None,
           decision: str, curves_png: bytes | None = None, label_issues: dict | None = None) -> str:
    """`splits`: {name: {"report": metrics.classification_report, "confusion_png": bytes,
    "errors": [(png, label, prediction, confidence)]}}; `comparison`: production's test accuracy
    on the same split ({"ref", "test_accuracy"}), or None; `curves_png`: the model's learning
    curves (report.learning_curves_figure), None for a model logged before it kept them;
    `label_issues`: {"checked": [splits], "count": int, "shown": [(png, split, index, label,
    suggested, self-confidence)]} (report.log_label_issues), None when not looked for."""
    e = html.escape
    parts = [f"<h1>Evaluation of {e(model_ref)}</h1>", f"<p>on {e(dataset_ref)}</p>",
             "<table><tr><th>split</th><th>accuracy</th><th>loss</th><th>macro F1</th><th>ECE</th></tr>"]
    for name, split in splits.items():
        r = split["report"]
        parts.append(f"<tr><td>{e(name)}</td><td>{r['accuracy']:.4f}</td><td>{r['loss']:.4f}</td>"
                     f"<td>{r['macro_f1']:.4f}</td><td>{r['ece']:.4f}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Against production</h2>")
    if comparison:
        ours = splits["test"]["report"]["accuracy"]
        parts.append(f"<table><tr><th></th><th>test accuracy</th></tr><tr><td>this model ({e(model_ref)})</td>"
                     f"<td>{ours:.4f}</td></tr><tr><td>production ({e(comparison['ref'])})</td>"
                     f"<td>{comparison['test_accuracy']:.4f}</td></tr></table>")
    else:
        parts.append("<p>no production model on this dataset version to compare with</p>")
    parts.append(f"<p>promotion gate: {e(decision)}</p>")
    parts.append("<h2>How it trained</h2>")
    parts.append(_img(curves_png, "learning curves: loss and accuracy per epoch") if curves_png else
                 "<p>this model artifact records no learning curves (it was logged before they were kept)</p>")
    for name, split in splits.items():
        per_class = split["report"]["per_class"]
        parts.append(f"<h2>{e(name)}</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th></tr>")
        for i, class_name in enumerate(class_names):
            parts.append(f"<tr><td>{e(class_name)}</td>" + "".join(
                f"<td>{per_class[k][i]:.3f}</td>" for k in ("precision", "recall", "f1")) + "</tr>")
        parts.append("</table>")
        parts.append(_img(split["confusion_png"], f"{name} confusion matrix"))
        parts.append(_img(split["reliability_png"], f"{name} reliability diagram (expected calibration error)"))
        errors = split["errors"]
        parts.append(f"<h3>{len(errors)} most confident errors</h3><div class=errors>" if errors
                     else "<p>no errors</p>")
        for png, label, prediction, confidence in errors:
            parts.append(f"<figure>{_img(png, f'{label} predicted as {prediction}')}<figcaption>"
                         f"{e(label)} &rarr; {e(prediction)}<br>{confidence:.3f}</figcaption></figure>")
        parts.append("</div>" if errors else "")
    if label_issues is not None:
        shown = label_issues["shown"]
        parts.append(f"<h2>Label issues</h2><p>{label_issues['count']} image(s) of "
                     f"{e(', '.join(label_issues['checked']))} whose given label the model doubts (confident learning, "
                     "cleanlab, on predictions for images the model did not train on), the least likely under their "
                     "label first: candidates to look at, not verdicts.</p>")
        if shown:
            parts.append("<div class=errors>")
            for png, split_name, index, label, suggested, confidence in shown:
                parts.append(f"<figure>{_img(png, f'{split_name} {index}: labelled {label}')}<figcaption>"
                             f"{e(split_name)} #{index}<br>{e(label)} &rarr; {e(suggested)}?<br>{confidence:.3f}"
                             "</figcaption></figure>")
            parts.append("</div>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             ".errors{display:flex;flex-wrap:wrap}figure{margin:4px;text-align:center;font-size:12px}"
             "img{image-rendering:pixelated}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Evaluation of {e(model_ref)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
