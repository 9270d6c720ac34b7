"""Report sections. Each module ``<section>.py`` has ``build(results) -> dict | None``; its
template is ``templates/sections/<section>.html.j2``. ``None`` means the section did not run."""
