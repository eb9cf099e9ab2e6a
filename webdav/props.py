"""WebDAV dead properties kept in the store's metadata, outside the versioned tree.

Limits keep one request from making a resource unlistable or the metadata
huge: an XML request body is at most ``MAX_XML_BODY`` bytes and ``MAX_XML_DEPTH``
elements deep; one property value at most ``MAX_PROPERTY`` bytes, all of one
resource's at most ``MAX_PROPERTIES``.
"""

from __future__ import annotations

import xml.parsers.expat

from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_REQUEST_ENTITY_TOO_LARGE, DAVError
from wsgidav.prop_man.property_manager import PropertyManager

from herofossil.webdav.metamap import MetaMapping

NAMESPACE = "webdav-props"
MAX_XML_BODY = 1 << 20  # PROPFIND, PROPPATCH and LOCK bodies of real clients are a few KiB
MAX_XML_DEPTH = 64  # of nested elements, in a request body and in a stored value
MAX_PROPERTY = 64 << 10
MAX_PROPERTIES = 1 << 20


class _TooDeep(Exception):
    pass


def xml_depth_ok(data: bytes, limit: int = MAX_XML_DEPTH) -> bool:
    """False when ``data`` nests elements deeper than ``limit`` (stops reading there).

    Malformed XML counts as fine here: the XML parser that reads it says why.
    """
    depth = 0

    def start(name, attrs):
        nonlocal depth
        depth += 1
        if depth > limit:
            raise _TooDeep

    def end(name):
        nonlocal depth
        depth -= 1

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except _TooDeep:
        return False
    except xml.parsers.expat.ExpatError:
        return True
    return True


def check_xml_body(data: bytes) -> None:
    """Raise a 4xx ``DAVError`` for a request body past the XML limits."""
    if len(data) > MAX_XML_BODY:
        raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE,
                       f"an XML request body is at most {MAX_XML_BODY} bytes")
    if not xml_depth_ok(data):
        raise DAVError(HTTP_BAD_REQUEST,
                       f"XML nested deeper than {MAX_XML_DEPTH} elements is refused")


class MetaPropertyManager(PropertyManager):
    """wsgidav's property manager over ``repo.meta`` (namespace ``webdav-props``)."""

    def __init__(self, repo):
        super().__init__()
        self.repo = repo

    def __repr__(self) -> str:
        return f"MetaPropertyManager({self.repo.path!r})"

    def _lazy_open(self) -> None:
        self._dict = MetaMapping(self.repo, NAMESPACE)
        self._loaded = True

    def _close(self) -> None:
        self._dict = None
        self._loaded = False

    def write_property(self, norm_url, name, property_value, dry_run=False, environ=None):
        """Store a dead property within the size and depth limits (413 or 400 past them)."""
        size = len(name) + len(property_value)
        if size > MAX_PROPERTY:
            raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE,
                           f"a property is at most {MAX_PROPERTY} bytes")
        if not xml_depth_ok(property_value):
            raise DAVError(HTTP_BAD_REQUEST,
                           f"a property nested deeper than {MAX_XML_DEPTH} elements")
        if not self._loaded:
            self._lazy_open()
        current = self._dict.get(norm_url) or {}
        total = size + sum(len(n) + len(v) for n, v in current.items() if n != name)
        if total > MAX_PROPERTIES:
            raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE,
                           f"the properties of one resource are at most {MAX_PROPERTIES} bytes")
        return super().write_property(norm_url, name, property_value, dry_run, environ)
