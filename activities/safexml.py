"""Parsing XML from outside (partner files, pushed uploads) without trusting it.

``parse_untrusted`` refuses, before and while parsing: files over a size limit, any
DOCTYPE (so no DTD, no entity: no XXE, no billion laughs), network access, and huge
trees; ``schema_errors`` validates against an XSD under a lock (libxml2 validation
contexts are not shared safely between threads). Callers turn ``UntrustedXmlError`` into
their own error type (with the reason for the ticket).
"""

from __future__ import annotations

import threading

from lxml import etree

__all__ = ["UntrustedXmlError", "parse_untrusted", "schema_errors"]

_DOCTYPE_MARKERS = tuple("<!DOCTYPE".encode(codec) for codec in ("utf-8", "utf-16-le",
                                                                  "utf-16-be"))
_schema_lock = threading.Lock()


class UntrustedXmlError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_untrusted(data: bytes, *, max_bytes: int) -> etree._Element:
    """The root element; raises ``UntrustedXmlError`` with the reason."""
    if len(data) > max_bytes:
        raise UntrustedXmlError(f"file is {len(data)} bytes, over the limit of {max_bytes}")
    if any(marker in data for marker in _DOCTYPE_MARKERS):
        raise UntrustedXmlError("file has a DOCTYPE; DTDs and entities are refused")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, dtd_validation=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UntrustedXmlError(f"not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UntrustedXmlError("file has a DOCTYPE; DTDs and entities are refused")
    return root


def schema_errors(schema: etree.XMLSchema, root: etree._Element) -> list[str]:
    """The first five validation errors (``line N: message``); empty when valid."""
    with _schema_lock:
        if schema.validate(root):
            return []
        return [f"line {e.line}: {e.message}" for e in schema.error_log][:5]
