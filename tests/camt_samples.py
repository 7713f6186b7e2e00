"""camt.053 statements for tests, in version .001.02 or .001.08, built with lxml."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree


@dataclass
class Tx:
    amount: str
    payer: str = ""
    remittance: list[str] = field(default_factory=list)
    end_to_end: str = "NOTPROVIDED"
    invoice_numbers: list[str] = field(default_factory=list)  # Strd/RfrdDocInf/Nb
    creditor_reference: str = ""  # Strd/CdtrRefInf/Ref


@dataclass
class Entry:
    amount: str
    transactions: list[Tx] = field(default_factory=list)
    credit: bool = True
    booked: bool = True
    reference: str = ""
    reversal: bool = False


def statement(entries: list[Entry], *, version: str = "08", message_id: str = "MSG-1",
              iban: str = "DE02120300000000202051", currency: str = "EUR") -> bytes:
    ns = f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}"

    def el(parent: etree._Element, tag: str, text: str | None = None,
           **attrs: str) -> etree._Element:
        node = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
        if text is not None:
            node.text = text
        return node

    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = el(root, "BkToCstmrStmt")
    header = el(body, "GrpHdr")
    el(header, "MsgId", message_id)
    el(header, "CreDtTm", "2026-11-25T08:00:00")
    stmt = el(body, "Stmt")
    el(stmt, "Id", f"{message_id}-STMT")
    el(stmt, "CreDtTm", "2026-11-25T08:00:00")
    el(el(el(stmt, "Acct"), "Id"), "IBAN", iban)
    for code in ("OPBD", "CLBD"):
        balance = el(stmt, "Bal")
        el(el(el(balance, "Tp"), "CdOrPrtry"), "Cd", code)
        el(balance, "Amt", "1000.00", Ccy=currency)
        el(balance, "CdtDbtInd", "CRDT")
        el(el(balance, "Dt"), "Dt", "2026-11-25")
    for number, entry in enumerate(entries, start=1):
        node = el(stmt, "Ntry")
        el(node, "NtryRef", entry.reference or f"E{number}")
        el(node, "Amt", entry.amount, Ccy=currency)
        el(node, "CdtDbtInd", "CRDT" if entry.credit else "DBIT")
        if entry.reversal:
            el(node, "RvslInd", "true")
        status = "BOOK" if entry.booked else "PDNG"
        if version == "08":
            el(el(node, "Sts"), "Cd", status)
        else:
            el(node, "Sts", status)
        el(el(node, "BookgDt"), "Dt", "2026-11-25")
        el(el(node, "ValDt"), "Dt", "2026-11-25")
        el(node, "AcctSvcrRef", f"BANK-{number}")
        code = el(el(node, "BkTxCd"), "Domn")
        el(code, "Cd", "PMNT")
        family = el(code, "Fmly")
        el(family, "Cd", "RCDT")
        el(family, "SubFmlyCd", "ESCT")
        if entry.transactions:
            details = el(node, "NtryDtls")
            for tx in entry.transactions:
                tx_node = el(details, "TxDtls")
                el(el(tx_node, "Refs"), "EndToEndId", tx.end_to_end)
                el(el(el(tx_node, "AmtDtls"), "TxAmt"), "Amt", tx.amount, Ccy=currency)
                if tx.payer:
                    debtor = el(el(tx_node, "RltdPties"), "Dbtr")
                    el(el(debtor, "Pty") if version == "08" else debtor, "Nm", tx.payer)
                if tx.remittance or tx.invoice_numbers or tx.creditor_reference:
                    info = el(tx_node, "RmtInf")
                    for line in tx.remittance:
                        el(info, "Ustrd", line)
                    for number in tx.invoice_numbers:
                        el(el(el(info, "Strd"), "RfrdDocInf"), "Nb", number)
                    if tx.creditor_reference:
                        el(el(el(info, "Strd"), "CdtrRefInf"), "Ref", tx.creditor_reference)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
