"""Write a notebook from a plain-text source where cells are separated by marker lines.

    # %% [markdown]     starts a markdown cell (the lines after it are markdown, as written)
    # %%                starts a code cell
    # %% tags=a,b       starts a code cell with cell tags

Usage: python tools/make_notebook.py notebooks/src/01_vae.txt notebooks/01_vae.ipynb
Notebooks are committed without outputs; their text sources are easier to review and
tests/test_notebooks.py checks that each notebook matches its source.
"""

import sys

import nbformat


def cells_from(text: str):
    kind, tags, lines = None, [], []
    for line in text.splitlines() + ["# %%"]:
        if line.startswith("# %%"):
            if kind is not None and "".join(lines).strip():
                body = "\n".join(lines).strip("\n")
                cell = nbformat.v4.new_markdown_cell(body) if kind == "md" else nbformat.v4.new_code_cell(body)
                if tags:
                    cell.metadata["tags"] = tags
                yield cell
            rest = line[4:].strip()
            kind = "md" if rest.startswith("[markdown]") else "code"
            tags = rest.split("=", 1)[1].split(",") if rest.startswith("tags=") else []
            lines = []
        else:
            lines.append(line)


def build(source: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells_from(open(source).read()))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids keep diffs small
    return nb


def main(source: str, target: str) -> None:
    nbformat.write(build(source), target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
