"""PDF rendering: Jinja2 templates (HTML autoescaped) turned into PDF by WeasyPrint.

Templates live in ``settings.templates_dir / "documents"`` so an operator can change them.
WeasyPrint only ever fetches through :class:`TemplateFetcher`, which serves files inside that
directory (stylesheets, a logo) and refuses every other URL: no network, no ``file:`` outside
the templates, whatever an order's texts or a template contain.

Rendering is CPU-bound and synchronous on purpose: the document activities are sync
methods that run in the worker's thread pool.
"""

from __future__ import annotations

import functools
import gettext
import logging
import mimetypes
import threading
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import pycountry
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

__all__ = [
    "CENT",
    "FetchRefused",
    "PdfRenderer",
    "TemplateFetcher",
    "format_country",
    "format_date",
    "format_money",
    "format_percent",
]

log = logging.getLogger("orders.documents")

CENT = Decimal("0.01")


class FetchRefused(ValueError):
    """WeasyPrint asked for a URL outside the templates directory (it is never fetched)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"refused to fetch {url!r}: {reason}")
        self.url = url
        self.reason = reason


class TemplateFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that serves regular files below ``root`` and nothing else."""

    def __init__(self, root: Path) -> None:
        super().__init__(timeout=1, allowed_protocols=("file",), allow_redirects=False)
        self.root = root.resolve()

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        path = self.resolve(url)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": content_type})

    def resolve(self, url: str) -> Path:
        """The file ``url`` names, or :class:`FetchRefused` when it is not one we serve."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise self._refuse(url, "only files inside the templates directory are served")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise self._refuse(url, "outside the templates directory")
        if not path.is_file():
            raise self._refuse(url, "no such file in the templates directory")
        return path

    def _refuse(self, url: str, reason: str) -> FetchRefused:
        log.warning("document rendering: refused to fetch %r (%s)", url, reason)
        return FetchRefused(url, reason)


def german_amount(value: object) -> str:
    """``"1234.5"`` -> ``1.234,50`` (German notation, rounded half up to cents)."""
    text = f"{Decimal(str(value)).quantize(CENT, ROUND_HALF_UP):,.2f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def format_money(value: Decimal, currency: str = "EUR") -> str:
    """``Decimal("1234.5")`` -> ``1.234,50 €`` (German notation)."""
    text = german_amount(value)
    return f"{text} €" if currency == "EUR" else f"{text} {currency}"


def format_percent(value: Decimal) -> str:
    """``Decimal("19.00")`` -> ``19 %``, ``Decimal("5.5")`` -> ``5,5 %``."""
    text = f"{Decimal(value).normalize():f}".replace(".", ",")
    return f"{text} %"


def format_date(value: date | datetime, zone: ZoneInfo | None = None) -> str:
    """``24.11.2026``; a moment with a time zone is shown as the day it is in ``zone`` (the
    shop's), so a document issued at 00:30 Berlin time carries that day, not UTC's."""
    if isinstance(value, datetime) and value.tzinfo is not None and zone is not None:
        value = value.astimezone(zone)
    return value.strftime("%d.%m.%Y")


@functools.cache
def _german_country_names() -> gettext.NullTranslations:
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["de"],
                               fallback=True)


def format_country(code: str) -> str:
    """``"AT"`` -> ``Österreich`` (the code itself when unknown)."""
    country = pycountry.countries.get(alpha_2=code)
    return _german_country_names().gettext(country.name) if country else code


class PdfRenderer:
    """Renders ``templates/documents/<name>`` to HTML and PDF.

    One instance per worker. The Jinja environment is thread-safe; the WeasyPrint step is
    serialised by a lock because Pango and cairo are not reliably thread-safe, and since
    WeasyPrint is mostly Python under the GIL this costs next to nothing.
    """

    def __init__(self, templates_dir: Path, timezone: str = "Europe/Berlin") -> None:
        self.templates_dir = templates_dir.resolve()
        zone = ZoneInfo(timezone)
        self.env = Environment(
            loader=FileSystemLoader(self.templates_dir),
            autoescape=select_autoescape(["html", "htm", "xml"]),
            undefined=StrictUndefined,
            auto_reload=True,
        )
        self.env.filters.update(money=format_money, percent=format_percent,
                                date=functools.partial(format_date, zone=zone),
                                country=format_country)
        self._lock = threading.Lock()

    def fetcher(self) -> TemplateFetcher:
        return TemplateFetcher(self.templates_dir)

    def render_html(self, template_name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(template_name).render(context)

    def render_pdf(self, template_name: str, context: dict[str, Any], *,
                   pdf_variant: str | None = None) -> bytes:
        """Render ``template_name`` with ``context`` to PDF bytes (``pdf_variant``, e.g.
        ``"pdf/a-3b"`` for e-invoices, as WeasyPrint names them)."""
        html = HTML(string=self.render_html(template_name, context),
                    base_url=f"{self.templates_dir}/", url_fetcher=self.fetcher())
        with self._lock:
            # The documents use a small bundled Latin font (documents/fonts/): embedding it
            # whole (~35 KB per style) is several times faster than subsetting it per PDF.
            pdf = html.write_pdf(full_fonts=True, pdf_variant=pdf_variant)
        if pdf is None:  # only when a target is given; keeps the type checker honest
            raise RuntimeError("WeasyPrint returned no PDF")
        return pdf
