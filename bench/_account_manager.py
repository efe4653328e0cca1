"""The names fanout.py and soak.py import from here, now in harness.py: delete this module once
they import harness themselves."""

from harness import gql, sign_up_on_plan, summary_ms, working_tree

__all__ = ["gql", "sign_up_on_plan", "summary_ms", "working_tree"]
