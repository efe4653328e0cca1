"""Pure business rules: value types, the permission policy, pricing and plans.

Nothing here does I/O or imports the other layers (schema, resolvers, persistence);
time and randomness come in as arguments.
"""
