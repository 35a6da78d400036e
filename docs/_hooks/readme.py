"""The README is the site's front page: one text for GitHub and the docs, never two that drift apart.

Its links into docs/ are made relative to the site (`docs/x.md` → `x.md`); everything else is as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def on_files(files: Files, config: Any) -> Files:
    readme = Path(config["config_file_path"]).parent / "README.md"
    text = re.sub(r"\]\(docs/\)", "](index.md)", readme.read_text())
    text = re.sub(r"\]\(docs/", "](", text)
    files.append(File.generated(config, "index.md", content=text))
    return files
