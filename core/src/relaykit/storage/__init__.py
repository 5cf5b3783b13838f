"""Storage: table definitions, the database handle, and one repository module per resource."""
