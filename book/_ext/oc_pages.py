"""A small Sphinx extension for the book's pages: no errors in the browser console.

- sphinx-thebe registers its configuration script once per build pass, so every
  page declared ``const THEBE_JS_URL`` twice; repeated scripts are dropped.
- the theme reads its colour mode from ``default_mode``, which nothing sets, and
  logged "Got invalid theme mode" on a first visit; it is set to "auto".
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    context.setdefault("default_mode", "auto")
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        filename = getattr(script, "filename", None) or ""  # inline scripts: None or "", by whoever added them
        key = (filename, getattr(script, "attributes", {}).get("body", "") if not filename else str(script))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
