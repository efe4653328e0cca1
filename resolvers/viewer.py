"""Reads of the viewer's own world: who they are, their agency, and any node by global ID.

A node the viewer may not read comes back as None, exactly like one that does not exist, so
IDs from other agencies reveal nothing.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.activity import Activity
from domain.agency import Agency, SubAccount, User
from domain.api_key import ApiKey
from domain.billing import BillingAdjustment
from domain.invitation import Invitation
from domain.ledger import Balance
from domain.lines import PhoneLine
from domain.merge import MergeRequest
from domain.payments import PaymentCard, Purchase
from domain.payouts import Payout
from domain.policy import Action, Target, Viewer, can, require
from domain.webhooks import WebhookEndpoint
from persistence import activities, api_keys, team
from persistence.queries.session import SessionContext
from resolvers.context import RequestContext
from resolvers.global_id import from_global_id


async def viewer(ctx: RequestContext) -> SessionContext:
    return await ctx.require_session()


def sub_account_target(sub_account: SubAccount) -> Target:
    return Target(sub_account.agency_id, sub_account.id, sub_account.is_primary)


def may_read(viewer: Viewer, sub_account: SubAccount) -> bool:
    """Removed sub-accounts stay readable to agency admins only, for the retention period."""
    if not can(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account)):
        return False
    return sub_account.is_live or can(
        viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(sub_account.agency_id)
    )


_ACTIVITY_KINDS = {
    "Campaign": "CAMPAIGN",
    "InboundAgent": "INBOUND_AGENT",
    "Automation": "AUTOMATION",
}


async def node(
    ctx: RequestContext, global_id: str
) -> (
    Agency
    | SubAccount
    | User
    | Invitation
    | ApiKey
    | Activity
    | PaymentCard
    | Purchase
    | Payout
    | PhoneLine
    | BillingAdjustment
    | MergeRequest
    | WebhookEndpoint
    | None
):
    viewer = await ctx.viewer()
    decoded = from_global_id(global_id)
    if decoded is None:
        return None
    type_name, key = decoded
    loaders = ctx.loaders
    if type_name == "Agency":
        agency = await loaders.agency_by_id.load(key)
        if agency is not None and can(viewer, Action.VIEW_AGENCY, Target(agency.id)):
            return agency
    elif type_name == "SubAccount":
        sub_account = await loaders.sub_account_by_id.load(key)
        if sub_account is not None and may_read(viewer, sub_account):
            return sub_account
    elif type_name in ("Campaign", "InboundAgent", "Automation"):
        async with ctx.services.database.read() as conn:
            activity = await activities.activity_by_id(conn, key)
        if activity is not None and activity.agency_id == viewer.agency_id:
            owner = await loaders.sub_account_by_id.load(activity.sub_account_id)
            kind_matches = activity.kind.value == _ACTIVITY_KINDS[type_name]
            if owner is not None and kind_matches and may_read(viewer, owner):
                return activity
    elif type_name == "Invitation":
        if can(viewer, Action.VIEW_USERS, Target(viewer.agency_id)):
            async with ctx.services.database.read() as conn:
                invitation = await team.invitation_by_id(conn, key)
            if invitation is not None and invitation.agency_id == viewer.agency_id:
                return invitation
    elif type_name == "ApiKey":
        if can(viewer, Action.MANAGE_API_KEYS, Target(viewer.agency_id)):
            async with ctx.services.database.read() as conn:
                api_key = await api_keys.api_key_by_id(conn, key)
            if api_key is not None and api_key.agency_id == viewer.agency_id:
                return api_key
    elif type_name == "PaymentCard":
        from resolvers.payment_cards import card_node

        return await card_node(ctx, key)
    elif type_name == "Purchase":
        from resolvers.purchases import purchase_node

        return await purchase_node(ctx, key)
    elif type_name == "Payout":
        from resolvers.payouts import payout_node

        return await payout_node(ctx, key)
    elif type_name == "PhoneLine":
        from resolvers.lines import line_node

        return await line_node(ctx, key)
    elif type_name == "BillingAdjustment":
        from resolvers.billing import adjustment_node

        return await adjustment_node(ctx, key)
    elif type_name == "MergeRequest":
        from resolvers.merge import merge_request_node

        return await merge_request_node(ctx, key)
    elif type_name == "WebhookEndpoint":
        from resolvers.webhooks import endpoint_node

        return await endpoint_node(ctx, key)
    elif type_name == "User":
        user = await loaders.user_by_id.load(key)
        if user is not None and (
            user.id == viewer.user_id or can(viewer, Action.VIEW_USERS, Target(user.agency_id))
        ):
            return user
    return None


async def primary_sub_account(ctx: RequestContext, agency: Agency) -> SubAccount:
    session = await ctx.require_session()
    viewer = session.viewer
    # The viewer's own primary came with the session lookup; other agencies' go by loader.
    primary = (
        session.primary
        if session.agency.id == agency.id and session.primary is not None
        else await ctx.loaders.primary_sub_account_by_agency.load(agency.id)
    )
    assert primary is not None, "every agency has its primary from sign-up"
    require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(primary))
    return primary


async def require_agency_details(ctx: RequestContext, agency: Agency) -> None:
    require(await ctx.viewer(), Action.VIEW_AGENCY_DETAILS, Target(agency.id))


async def balances(ctx: RequestContext, sub_account: SubAccount) -> list[Balance]:
    return await ctx.loaders.balances_by_sub_account.load(sub_account.id)


def today(ctx: RequestContext, zone: str) -> date:
    """Today in the agency's time zone `zone`: billing dates and renewals turn over at local
    midnight, not at UTC midnight."""
    return ctx.services.clock().astimezone(ZoneInfo(zone)).date()


async def next_billing_date(ctx: RequestContext, sub_account: SubAccount) -> date:
    return sub_account.next_billing_date(await agency_today(ctx, sub_account.agency_id))


async def agency_today(ctx: RequestContext, agency_id: UUID) -> date:
    """Today where the agency is. The zone comes with the agency, read (or primed by the
    session lookup) through the request's loader: never guessed from what this request
    happened to load already, which on a socket may be a session from before the zone
    changed."""
    agency = await ctx.loaders.agency_by_id.load(agency_id)
    assert agency is not None, "a sub-account's agency outlives it"
    return today(ctx, agency.time_zone)


async def spent_this_period(ctx: RequestContext, sub_account: SubAccount) -> int:
    """What the sub-account spent (client price) in its current billing period, micro-dollars."""
    return await ctx.loaders.spent_this_period.load(sub_account)
