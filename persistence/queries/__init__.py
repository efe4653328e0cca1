"""Named read queries: what a screen or a DataLoader batch asks the database, by name."""
