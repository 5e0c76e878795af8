// notes theme: start mermaid and KaTeX once their deferred scripts have
// loaded. Both are optional; pages without diagrams or math do not load them.
(function () {
  "use strict";

  function start() {
    if (window.mermaid) {
      var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: dark ? "dark" : "default" });
      window.mermaid.run({ querySelector: "pre.mermaid" });
    }
    if (window.renderMathInElement) {
      document.querySelectorAll(".math").forEach(function (el) {
        window.renderMathInElement(el, {
          delimiters: [
            { left: "\\[", right: "\\]", display: true },
            { left: "\\(", right: "\\)", display: false }
          ],
          throwOnError: false
        });
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
