"""The use cases behind the GraphQL fields: check the policy, run the rules, persist, announce."""
