"""One search box in the header, not two.

pydata-sphinx-theme 0.17 puts a search field into a top navbar unless the theme option
``navbar_persistent`` is set, and sphinx-book-theme already shows one in its sidebar (the bug
is executablebooks/sphinx-book-theme#986). Jupyter Book 1.x builds ``html_theme_options``
itself from ``_config.yml``, and a ``sphinx: config: html_theme_options`` entry would replace
that whole dictionary (launch buttons included), so this extension adds the one option
before the theme reads it. ``tests/test_browser.py`` checks that each page shows one box.
"""

from sphinx.application import Sphinx


def _no_navbar_search(app: Sphinx, config) -> None:
    config.html_theme_options.setdefault("navbar_persistent", [])


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _no_navbar_search)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
