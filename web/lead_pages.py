"""Pages: filled in by this session."""

from starlette.routing import Route

routes: list[Route] = []
