"""README's module map ("Where things are") lists exactly the package's modules."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_module_map_matches_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for cell in re.findall(r"^\| (.+?) \|", section, flags=re.MULTILINE):
        listed.update(re.findall(r"`([\w/]+\.py)`", cell))
    package = ROOT / "rna_localization"
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py")
               if p.name != "__init__.py" and "__pycache__" not in p.parts}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))
