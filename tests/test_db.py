from __future__ import annotations

from sqlalchemy import Engine, inspect


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"order_record", "customer", "stock", "reservation", "document", "number_range",
            "mail_outbox", "upload", "ticket", "payment"} <= tables


async def test_dev_server_has_contract_search_attributes(client) -> None:  # type: ignore[no-untyped-def]
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from models.orders import SearchAttr

    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(SearchAttr.TYPES) <= set(resp.custom_attributes)
