"""The offline page for `dvc plots show`/`diff` and the ROC template (one curve per membership metric)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from canaryaudit.plots import DVC_PLACEHOLDERS, offline_page, page_html, write_offline_template
from tests.conftest import REPO

VERSIONS = {"vega": "6", "vega_lite": "5.21", "embed": "7"}


def test_page_keeps_dvc_placeholders_and_scopes_the_bundle():
    page = page_html("window.vegaEmbed = 1; const t = '</script>'; const s = {a: {b: 1}};", VERSIONS)
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page  # DVC's CDN <script src> tags go there: left out
    assert "<\\/script>" in page and page.count("</script>") == 1  # the code cannot end its own element
    assert "(() => {\nwindow.vegaEmbed = 1;" in page and "{a: {b: 1}}" in page  # braces untouched
    for placeholder in DVC_PLACEHOLDERS:
        with pytest.raises(ValueError, match="DVC would replace"):
            page_html(f"var x = '{placeholder}';", VERSIONS)


@pytest.fixture(scope="module")
def rendered_roc(tmp_path_factory):
    """The ROC plot of two variants rendered by dvc-render into the offline page, as `dvc plots show` does."""
    from dvc_render import VegaRenderer, render_html

    rows = []
    for filename, shift in (("nonprivate_roc.csv", 0.2), ("dp_roc.csv", 0.0)):
        for metric in ("perplexity", "zlib", "min_k"):
            for fpr in (0.0, 0.5, 1.0):
                rows.append({"metric": metric, "fpr": fpr, "tpr": min(1.0, fpr + shift * (fpr > 0) * (fpr < 1)),
                             "rev": "workspace", "filename": filename, "field": "tpr"})
    renderer = VegaRenderer(rows, "membership_roc", template=str(REPO / ".dvc" / "plots" / "roc.json"),
                            x="fpr", y="tpr", x_label="false positive rate", y_label="true positive rate")
    out = tmp_path_factory.mktemp("plots")
    page = write_offline_template(out)
    html_path = render_html([renderer], out / "index.html", html_template=page)
    return renderer.get_filled_template(), (out / "index.html").read_text(encoding="utf-8"), html_path


def test_offline_page_has_no_network_script_and_embeds_every_plot(rendered_roc):
    _spec, html, _path = rendered_roc
    assert not re.search(r"<script[^>]*\bsrc=", html) and "cdn.jsdelivr" not in html
    assert "window.vegaEmbed=" in html and "vegaEmbed('#membership_roc', spec)" in html
    assert len(html) > 500_000  # Vega, Vega-Lite and vega-embed inlined


def test_roc_template_draws_one_curve_per_metric_with_axis_titles(rendered_roc):
    import vl_convert

    spec, _html, _path = rendered_roc
    svg = vl_convert.vegalite_to_svg(spec, vl_version="5.21")  # the library versions the page inlines
    texts = set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert {"perplexity", "zlib", "min_k", "membership metric"} <= texts  # colour legend: one entry a metric
    assert {"workspace dp_roc.csv", "workspace nonprivate_roc.csv"} <= texts  # dash legend: file and revision
    assert {"false positive rate", "true positive rate"} <= texts
    lines = [d for d in re.findall(r'<path[^>]*aria-roledescription="line mark"[^>]*>', svg)]
    assert len(lines) == 3 * 2 + 1  # a curve per (metric, file), plus the chance diagonal


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed: the page's scripts are not executed")
def test_page_scripts_run_and_hand_each_spec_to_vega_embed(rendered_roc):
    import json

    import vl_convert

    spec, _html, path = rendered_roc
    proc = subprocess.run(["node", str(REPO / "tests" / "data" / "check_plots_page.js"), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    embedded = json.loads(proc.stdout)
    assert list(embedded) == ["#membership_roc"] and embedded["#membership_roc"] == spec
    assert vl_convert.vegalite_to_svg(embedded["#membership_roc"], vl_version="5.21").startswith("<svg")


def test_the_repository_config_points_dvc_at_the_offline_page():
    config = (REPO / ".dvc" / "config").read_text()
    assert re.search(r"html_template\s*=\s*plots/offline.html", config)
    assert offline_page.__module__ == "canaryaudit.plots"
