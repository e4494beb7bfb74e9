"""View helpers shared by the pages: URL state, cached resources, HTML token strips, charts, links."""
