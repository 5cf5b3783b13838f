"""One controller per resource of the contract."""
