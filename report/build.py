"""Turn `dvc plots show`'s output folder into one self-contained HTML file.

DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN and the image plots from a
`static/` folder beside it. Here the three scripts come from report/vendor/ (their
licences are beside them) and the images are inlined as data URIs, so the file opens
anywhere, offline, and can be mailed or attached as it is.

    python -m report.build dvc_plots/index.html dvc_plots/report.html
"""

import base64
import mimetypes
import re
import sys
from pathlib import Path

VENDOR = Path(__file__).parent / "vendor"
SCRIPT = re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/(vega|vega-lite|vega-embed)@[^"]*">\s*</script>')
IMAGE = re.compile(r'src="(static/[^"]+)"')


def self_contained(html, folder):
    def inline_script(match):
        code = (VENDOR / f"{match.group(1)}.min.js").read_text(encoding="utf-8")
        code = code.replace("</script", "<\\/script")  # the page's parser must not end the script early
        return f"<script>{code}</script>"

    def inline_image(match):
        path = Path(folder) / match.group(1)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f'src="data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    html, scripts = SCRIPT.subn(inline_script, html)
    if scripts != 3:
        raise SystemExit(f"error: expected DVC's three Vega script tags in the page, found {scripts}: "
                         f"has `dvc plots show` changed its template?")
    return IMAGE.sub(inline_image, html)


def main(source, target):
    source, target = Path(source), Path(target)
    html = self_contained(source.read_text(encoding="utf-8"), source.parent)
    tmp = target.with_name(f".tmp-{target.name}")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    print(target.resolve())


if __name__ == "__main__":
    main(*sys.argv[1:3])
