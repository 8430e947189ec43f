"""Jobs of the commercial side: apply an approved proposal; the daily expiry of proposals and licences."""

import dagster as dg
from pydantic import Field

from report_pipelines.defs.common import refuse
from report_pipelines.defs.resources import AppResource
from report_pipelines.domain.errors import ReportPipelinesError
from report_pipelines.services.commercial import apply_proposal, expire_proposals, stop_unserved_work


class ApplyProposalConfig(dg.Config):
    proposal_id: int = Field(description="the approved proposal whose products and licences to write")


@dg.op
def apply_approved_proposal(context: dg.OpExecutionContext, config: ApplyProposalConfig, app: AppResource) -> None:
    """Write the client's products and licences (creating the client if it was a prospect), once."""
    application = app.app()
    try:
        applied = apply_proposal(application.engine, config.proposal_id, application.now())
    except ReportPipelinesError as exc:
        refuse(context, exc)
    if applied is None:
        context.log.info("proposal %s was already applied", config.proposal_id)
        context.add_output_metadata({"proposal_id": config.proposal_id, "applied": False})
        return
    context.add_output_metadata({
        "proposal_id": applied.proposal_id, "client_id": applied.client_id, "client_created": applied.client_created,
        "licences": dg.MetadataValue.json([
            {"product": lic.product_code, "quantity": lic.quantity, "valid_from": lic.valid_from.isoformat(),
             "valid_to": lic.valid_to.isoformat() if lic.valid_to else None} for lic in applied.licences]),
    })


@dg.op
def expire_commercial(context: dg.OpExecutionContext, app: AppResource) -> None:
    """Expire proposals past their validity; stop new work (pause schedules) of clients whose licence ended."""
    application = app.app()
    now = application.now()
    expired = expire_proposals(application.engine, now)
    paused = stop_unserved_work(application.engine, now)
    context.log.info("expired proposals %s; paused schedules %s", expired, paused)
    context.add_output_metadata({"expired_proposals": len(expired), "paused_schedules": len(paused)})


@dg.job(description="Write an approved proposal's products and licences (exactly once).")
def apply_proposal_job() -> None:
    apply_approved_proposal()


@dg.job(description="Daily: expire proposals and trials past their dates, pause work of unlicensed clients.")
def expire_commercial_job() -> None:
    expire_commercial()
