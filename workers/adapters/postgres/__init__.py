"""The PostgreSQL system of record: schema, migrations, the repository and the scheduler table."""
