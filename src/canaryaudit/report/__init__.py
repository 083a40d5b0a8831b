"""The HTML privacy report.

Modules: ``inputs`` loads the stage outputs (tolerating missing ones), ``measures``
derives the headline numbers (shared with the gate), ``summary`` builds
reports/summary.json, ``figures`` draws inline SVG, ``masking`` masks PII,
``sections`` prepares each section's data and ``render`` fills the Jinja2 template.
Nothing is imported here, so ``canaryaudit.gate`` stays light.
"""
