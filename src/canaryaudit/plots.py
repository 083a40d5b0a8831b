"""An HTML page template for ``dvc plots show`` / ``dvc plots diff`` that works with no network.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN, so the plots are blank
offline. DVC accepts a custom page (``plots.html_template`` in ``.dvc/config``, a path relative
to ``.dvc/``) in which it replaces ``{plot_divs}`` with one ``<div>`` per plot, each calling
``vegaEmbed``. This module writes such a page with the three libraries inlined, taken from
the ``vl-convert-python`` package (the Vega team's bundler, which ships them in its wheel).
The page has no ``{scripts}`` placeholder, so DVC adds no CDN ``<script src>`` either.
"""

from __future__ import annotations

from pathlib import Path

from canaryaudit.io import atomic_open

#: Where the workspace's .dvc/config points ``plots.html_template`` (relative to the workspace).
TEMPLATE_PATH = Path(".dvc") / "plots" / "offline.html"
#: Vega-Lite major version of DVC's plot templates (their ``$schema`` is vega-lite v5).
VEGA_LITE_VERSION = "v5"
#: Placeholders dvc-render replaces with ``str.replace``: the inlined code must not contain them.
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>canaryaudit: DVC plots</title>
<!-- Vega {vega}, Vega-Lite {vega_lite}, vega-embed {embed}, inlined: this page loads nothing from the network -->
<script>
{bundle}
</script>
<style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def _latest_v5(versions: list[str]) -> str:
    """The newest Vega-Lite 5.x among vl-convert's bundled versions (e.g. ``v5_21``)."""
    v5 = [v for v in versions if v.lstrip("v").startswith("5")]
    if not v5:
        raise RuntimeError(f"vl-convert bundles no Vega-Lite 5 (it has {', '.join(versions)})")
    return max(v5, key=lambda v: tuple(int(p) for p in v.lstrip("v").replace("_", ".").split(".") if p.isdigit()))


def page_html(bundle: str, versions: dict[str, str]) -> str:
    """The page around ``bundle`` (JavaScript defining ``window.vegaEmbed``), DVC's placeholders kept."""
    # In a function scope, so the bundle's top-level names (``n``, ``t``, ...) cannot clash with the
    # ``var spec`` of DVC's plot scripts; it publishes window.vegaEmbed itself.
    safe = "(() => {\n" + bundle.replace("</script", "<\\/script") + "\n})();"  # and never closes its <script>
    for placeholder in DVC_PLACEHOLDERS:
        if placeholder in safe:
            raise ValueError(f"the JavaScript bundle contains {placeholder}, which DVC would replace")
    page = _PAGE
    for key in ("vega", "vega_lite", "embed"):
        page = page.replace("{" + key + "}", versions[key])
    return page.replace("{bundle}", safe)  # last, and not str.format: the code is full of braces


def offline_page() -> str:
    """The page with Vega, Vega-Lite 5 and vega-embed from vl-convert (no network needed)."""
    import vl_convert

    vega_lite = _latest_v5(list(vl_convert.get_vegalite_versions()))
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite)
    versions = {"vega": vl_convert.get_vega_version(), "vega_lite": vega_lite, "embed": vl_convert.get_vega_embed_version()}
    return page_html(bundle, versions)


def write_offline_template(root: Path, force: bool = False) -> Path:
    """Write ``.dvc/plots/offline.html`` under ``root`` (kept when present unless ``force``); return its path."""
    path = Path(root) / TEMPLATE_PATH
    if path.is_file() and not force:
        return path
    page = offline_page()
    with atomic_open(path) as handle:
        handle.write(page)
    return path
