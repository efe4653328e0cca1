"""The merge request status enum, apart from schema/merge.py so the agency type can take it as
an argument without importing the merge types (which import the sub-account type)."""

from __future__ import annotations

import strawberry

from domain.merge import MergeStatus as MergeStatusEntity

MergeStatus = strawberry.enum(MergeStatusEntity, name="MergeStatus")
