"""Everything that touches storage: tables, migrations, the unit of work, queries, brokers."""
