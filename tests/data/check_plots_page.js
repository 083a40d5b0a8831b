// Runs the inline scripts of a `dvc plots show` page in node (no DOM, no network): the page must load
// nothing from the network, its bundle must define window.vegaEmbed, and each plot script must call it
// with a Vega-Lite spec (printed, for the test to render with vl-convert, which ships the same libraries).
const fs = require("fs");
const html = fs.readFileSync(process.argv[2], "utf8");
if (/<script[^>]*\bsrc=/.test(html)) { console.log("FAIL external script"); process.exit(3); }
const scripts = [...html.matchAll(/<script[^>]*>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
globalThis.window = globalThis;
(0, eval)(scripts[0]);
if (typeof window.vegaEmbed !== "function") { console.log("FAIL the bundle defines no vegaEmbed"); process.exit(4); }
const embedded = {};
window.vegaEmbed = (id, spec) => { embedded[id] = spec; };
for (const code of scripts.slice(1)) (0, eval)(code);
console.log(JSON.stringify(embedded));
