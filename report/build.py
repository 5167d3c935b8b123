"""`make report`: every `dvc plots` plot in one self-contained HTML file, the ladder first.

    python -m report.build [dvc_plots/report.html] [--project .]

The page comes from DVC itself, `dvc plots show --html-template`: DVC fills the
template's `{plot_divs}` with its Vega plots, in dvc.yaml's order (the cross-model
ladder comes first). The template carries Vega, Vega-Lite and Vega-Embed inline (from
report/vendor/, their licences beside them) instead of DVC's CDN links, and the image
plots (metrics/visualize/*.png) inline as data URIs, so the file opens anywhere, offline,
and can be mailed or attached as it is.
"""

import argparse
import base64
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ruamel.yaml import YAML

VENDOR = Path(__file__).parent / "vendor"
SCRIPTS = ("vega", "vega-lite", "vega-embed")
PICTURES = Path("metrics/visualize")

TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Dogs vs. Cats: the chapter's ladder</title>
{scripts}
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-spacing: 15px; }}
.pictures img {{ max-width: 100%; margin: 0.5em 0 1.5em; display: block; }}
</style>
</head>
<body>
<h1>Dogs vs. Cats: the chapter's ladder</h1>
<p>Validation accuracy and loss of every model per epoch, test accuracy against the book's,
then each model's curves, ROC, precision-recall and confusion matrices.</p>
{{plot_divs}}
<h2>What the fine-tuned convnet sees</h2>
<div class="pictures">
{pictures}
</div>
</body>
</html>
"""


def inline_scripts():
    tags = []
    for name in SCRIPTS:
        code = (VENDOR / f"{name}.min.js").read_text(encoding="utf-8")
        tags.append("<script>" + code.replace("</script", "<\\/script") + "</script>")  # must not end the tag early
    return "\n".join(tags)


def inline_pictures(project):
    parts = []
    for path in sorted((project / PICTURES).glob("*.png")):
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(path.stem)}</h3>\n"
                     f"<img alt=\"{html.escape(path.name)}\" src=\"data:image/png;base64,{data}\">")
    return "\n".join(parts) or "<p>No pictures: run <code>dvc repro visualize</code>.</p>"


def vega_plots(project):
    """The ids of dvc.yaml's top-level plots, in order, except the image folder."""
    plots = YAML(typ="safe", pure=True).load((project / "dvc.yaml").read_text()).get("plots", [])
    ids = [next(iter(plot)) if isinstance(plot, dict) else plot for plot in plots]
    return [plot_id for plot_id in ids if plot_id != str(PICTURES)]


def build(target, project="."):
    project, target = Path(project).resolve(), Path(target).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.html"
        template.write_text(TEMPLATE.format(scripts=inline_scripts(), pictures=inline_pictures(project)),
                            encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(template),
                                 "--out", str(Path(tmp) / "out"), *vega_plots(project)],
                                cwd=project, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"error: dvc plots show failed: {result.stderr.strip().splitlines()[-1:]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".tmp-{target.name}")
        shutil.copyfile(Path(tmp) / "out/index.html", partial)
        partial.replace(target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m report.build", description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", default="dvc_plots/report.html")
    parser.add_argument("--project", default=".", help="the DVC project to report on (default: here)")
    args = parser.parse_args(argv)
    print(build(args.target, args.project))


if __name__ == "__main__":
    main(sys.argv[1:])
