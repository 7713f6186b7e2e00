"""Bank statements: ISO 20022 camt.053 (versions .001.02 and .001.08) read safely.

A file is parsed without DTDs, entities or network access (``activities.safexml``), then
validated against the official XSD of its version (``schemas/camt/``) before anything is
read from it. Only booked credit entries (``CdtDbtInd`` CRDT, status BOOK) are payments;
debits and pending entries are counted and skipped. A booked reversal (``RvslInd`` true: a
customer's payment taken back, or our own transfer returned) is no payment either: it is
reported apart, for a human. An entry with several transactions (a batch booking) gives one
credit per transaction (``TxDtls``) with its own amount, payer and remittance lines when the
transactions add up to the entry's amount; otherwise (or with amounts in another currency)
the entry is one credit of its booked amount with all their remittance lines, so a credit
never counts more than was booked. An entry without transaction details is one credit with
the entry's amount. The remittance lines are every ``Ustrd`` plus the structured references
(``Strd/RfrdDocInf/Nb``, ``Strd/CdtrRefInf/Ref``).

Each credit carries a stable id (statement id, entry reference, transaction index), so the
same credit read twice is recognisable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache

from lxml import etree

from activities.safexml import UntrustedXmlError, parse_untrusted, schema_errors
from models.orders import CURRENCIES
from settings import PROJECT_DIR

__all__ = ["BankCredit", "Reversal", "Statement", "StatementError", "parse_statement"]

SCHEMA_DIR = PROJECT_DIR / "schemas" / "camt"
CENT = Decimal("0.01")
VERSIONS = {f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{v}": v for v in ("02", "08")}


class StatementError(ValueError):
    """The file is no readable camt.053 statement (the reason says why)."""


@dataclass(frozen=True)
class BankCredit:
    credit_id: str
    amount: Decimal
    currency: str
    booked_on: date | None
    payer: str
    remittance: list[str]
    end_to_end_id: str = ""


@dataclass(frozen=True)
class Reversal:
    """A booked reversal: ``credit`` True when money came back to the account."""

    entry_id: str
    amount: Decimal
    currency: str
    credit: bool
    remittance: list[str]


@dataclass(frozen=True)
class Statement:
    message_id: str
    version: str  # "02" or "08"
    iban: str
    credits: list[BankCredit] = field(default_factory=list)
    skipped_debits: int = 0
    skipped_pending: int = 0
    reversals: list[Reversal] = field(default_factory=list)


@cache
def _schema(version: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / f"camt.053.001.{version}.xsd"),
                                       parser))


def _local(node: etree._Element, path: str) -> list[etree._Element]:
    """Elements under ``node`` by a path of local names (``"Refs/EndToEndId"``)."""
    steps = "/".join(f"*[local-name()='{step}']" for step in path.split("/"))
    found: list[etree._Element] = node.xpath(steps)
    return found


def _text(node: etree._Element, path: str) -> str:
    found = _local(node, path)
    return (found[0].text or "").strip() if found else ""


def _amount(node: etree._Element) -> tuple[Decimal, str]:
    """An amount in cents and its currency; more decimals, or a code that is not ISO 4217,
    make the file unusable (nothing could be booked from it)."""
    try:
        amount = Decimal((node.text or "").strip())
    except InvalidOperation:
        raise StatementError(f"not an amount: {node.text!r}") from None
    if amount != amount.quantize(CENT):
        raise StatementError(f"amount {node.text} has more than two decimals")
    currency = node.get("Ccy", "")
    if currency not in CURRENCIES:
        raise StatementError(f"{currency!r} is not an ISO 4217 currency code")
    return amount.quantize(CENT), currency


def _status(entry: etree._Element, version: str) -> str:
    return _text(entry, "Sts/Cd") if version == "08" else _text(entry, "Sts")


def _payer(details: etree._Element) -> str:
    for path in ("RltdPties/Dbtr/Pty/Nm", "RltdPties/Dbtr/Nm", "RltdPties/UltmtDbtr/Pty/Nm",
                 "RltdPties/UltmtDbtr/Nm"):
        if name := _text(details, path):
            return name
    return ""


def _booked_on(entry: etree._Element) -> date | None:
    text = _text(entry, "BookgDt/Dt") or _text(entry, "BookgDt/DtTm")[:10]
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_statement(data: bytes, *, max_bytes: int) -> Statement:
    """The booked credits of a camt.053 file, or ``StatementError``."""
    try:
        root = parse_untrusted(data, max_bytes=max_bytes)
    except UntrustedXmlError as exc:
        raise StatementError(str(exc)) from None
    namespace = etree.QName(root).namespace or ""
    version = VERSIONS.get(namespace)
    if version is None or etree.QName(root).localname != "Document":
        raise StatementError(f"not a camt.053.001.02 or .08 document (root "
                             f"{etree.QName(root).text})")
    if errors := schema_errors(_schema(version), root):
        raise StatementError("camt.053 schema: " + "; ".join(errors[:5]))
    message_id = _text(root, "BkToCstmrStmt/GrpHdr/MsgId")
    credits: list[BankCredit] = []
    reversals: list[Reversal] = []
    debits = pending = 0
    iban = ""
    for statement in _local(root, "BkToCstmrStmt/Stmt"):
        statement_id = _text(statement, "Id") or message_id
        iban = iban or _text(statement, "Acct/Id/IBAN")
        for number, entry in enumerate(_local(statement, "Ntry"), start=1):
            reference = (_text(entry, "NtryRef") or _text(entry, "AcctSvcrRef")
                         or f"#{number}")
            entry_id = f"{statement_id}/{reference}"
            booked = _status(entry, version) == "BOOK"
            credit = _text(entry, "CdtDbtInd") == "CRDT"
            if booked and _text(entry, "RvslInd").lower() in ("true", "1"):
                amount, currency = _amount(_local(entry, "Amt")[0])
                reversals.append(Reversal(entry_id, amount, currency, credit,
                                          _entry_remittance(entry)))
                continue
            if not credit:
                debits += 1
                continue
            if not booked:
                pending += 1
                continue
            credits += _entry_credits(entry, entry_id)
    return Statement(message_id=message_id, version=version, iban=iban, credits=credits,
                     skipped_debits=debits, skipped_pending=pending, reversals=reversals)


def _remittance(node: etree._Element) -> list[str]:
    """The unstructured lines and structured references under ``node``'s ``RmtInf``."""
    texts = [(n.text or "").strip() for n in
             _local(node, "RmtInf/Ustrd") + _local(node, "RmtInf/Strd/RfrdDocInf/Nb")
             + _local(node, "RmtInf/Strd/CdtrRefInf/Ref")]
    return [text for text in texts if text]


def _entry_remittance(entry: etree._Element) -> list[str]:
    lines = [line for details in _local(entry, "NtryDtls/TxDtls")
             for line in _remittance(details)]
    return lines or [t for t in [_text(entry, "AddtlNtryInf")] if t]


def _entry_credits(entry: etree._Element, entry_id: str) -> list[BankCredit]:
    entry_amount, currency = _amount(_local(entry, "Amt")[0])
    booked_on = _booked_on(entry)
    transactions = _local(entry, "NtryDtls/TxDtls")
    if not transactions:
        return [BankCredit(credit_id=entry_id, amount=entry_amount, currency=currency,
                           booked_on=booked_on, payer="",
                           remittance=[t for t in [_text(entry, "AddtlNtryInf")] if t])]
    credits = []
    for index, details in enumerate(transactions, start=1):
        amounts = _local(details, "AmtDtls/TxAmt/Amt") or _local(details, "Amt")
        amount, ccy = _amount(amounts[0]) if amounts else (entry_amount, currency)
        if len(transactions) > 1 and not amounts:
            raise StatementError(f"entry {entry_id}: a batch booking without the amount of "
                                 f"transaction {index}")
        credits.append(BankCredit(
            credit_id=f"{entry_id}/{index}", amount=amount, currency=ccy or currency,
            booked_on=booked_on, payer=_payer(details), remittance=_remittance(details),
            end_to_end_id=_text(details, "Refs/EndToEndId")))
    if (sum((c.amount for c in credits), Decimal(0)) != entry_amount
            or any(c.currency != currency for c in credits)):
        # the details do not add up to what was booked: the booking counts, as one credit
        payers = {c.payer for c in credits}
        return [BankCredit(credit_id=entry_id, amount=entry_amount, currency=currency,
                           booked_on=booked_on,
                           payer=payers.pop() if len(payers) == 1 else "",
                           remittance=[line for c in credits for line in c.remittance],
                           end_to_end_id=credits[0].end_to_end_id if len(credits) == 1
                           else "")]
    return credits
