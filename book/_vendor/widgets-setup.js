// Loaded on widget pages after require.js and before embed-amd.js (order: nb_ipywidgets_js in
// _config.yml). Written for this book; see VENDORED.md.
(function () {
  // The folder this script was served from (the site root), wherever the page sits.
  var here = document.currentScript.src.replace(/[^\/]*$/, "");
  // embed-amd.js defines these modules itself, but derives the URL of its Font Awesome fonts from
  // the URL requirejs assigns to them (by default next to the page, giving 404s on every page
  // outside the root). Mapping them to the bundle makes the fonts load from this folder.
  var bundle = here + "embed-amd";
  require.config({
    paths: {
      "@jupyter-widgets/base": bundle,
      "@jupyter-widgets/base7": bundle,
      "@jupyter-widgets/controls": bundle,
      "@jupyter-widgets/controls7": bundle,
      "@jupyter-widgets/html-manager": bundle,
      "@jupyter-widgets/html-manager/dist/libembed-amd": bundle
    }
  });
  // The theme's Font Awesome script otherwise replaces the <i> icons of widgets (Play) by SVGs,
  // breaking them; "nest" keeps the element the widget holds on to.
  window.FontAwesomeConfig = { autoReplaceSvg: "nest" };

  // The widget manager typesets labels with MathJax 2's API (MathJax.Hub.Queue), but Sphinx
  // loads MathJax 3, which has no Hub: map the call onto MathJax 3's typesetPromise. MathJax 3
  // replaces window.MathJax when its (deferred) script runs, so add the shim once the document
  // is parsed, before the widgets render.
  function shimMathJax2() {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          if (window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise(element ? [element] : undefined).catch(function () {});
          }
        }
      };
    }
  }
  document.addEventListener("DOMContentLoaded", shimMathJax2);
})();
