"""Commercial domain: products, discount policies, proposals and licences. Pure Python.

Money is ``Decimal`` (never float), rounded once, at the line total, half-up to the currency's
minor unit. Nothing here reads a database: use counts, catalogues and dates are passed in. Each
module's docstring states its decisions:

* :mod:`.money` -- :class:`Money`, :func:`round_cents`, minor units (JPY 0, BHD/KWD 3, others 2);
* :mod:`.products` -- :class:`Product`, :class:`Unit`, :data:`REPORTS_PRODUCT`, :class:`Catalogue`;
* :mod:`.policies` -- :class:`CommercialPolicy`, :class:`PolicyUsage`, :func:`eligibility`;
* :mod:`.pricing` -- :func:`price_proposal` (best single policy, stacking, explanation);
* :mod:`.proposals` -- the proposal state machine (:func:`submit`, :func:`approve`, ...);
* :mod:`.licences` -- licences from approvals, trials, :func:`served_on`.
"""

from report_pipelines.domain.commercial.licences import (
    TRIAL_MAX_DAYS,
    TRIAL_MIN_DAYS,
    Licence,
    is_active,
    licences_from_approved,
    reports_covered_through,
    served_on,
    trial_licences,
)
from report_pipelines.domain.commercial.money import MINOR_UNITS, Money, minor_units, round_cents
from report_pipelines.domain.commercial.policies import CommercialPolicy, PolicyKind, PolicyUsage, eligibility
from report_pipelines.domain.commercial.pricing import PolicyOutcome, PricedLine, PricedProposal, price_proposal
from report_pipelines.domain.commercial.products import REPORTS_PRODUCT, Catalogue, Product, Unit, check_quantity
from report_pipelines.domain.commercial.proposals import (
    ClientRef,
    Proposal,
    ProposalStatus,
    Prospect,
    Transition,
    approve,
    expire,
    new_proposal,
    reject,
    revise,
    submit,
)

__all__ = [
    "MINOR_UNITS", "REPORTS_PRODUCT", "TRIAL_MAX_DAYS", "TRIAL_MIN_DAYS",
    "Catalogue", "ClientRef", "CommercialPolicy", "Licence", "Money", "PolicyKind", "PolicyOutcome", "PolicyUsage",
    "PricedLine", "PricedProposal", "Product", "Proposal", "ProposalStatus", "Prospect", "Transition", "Unit",
    "approve", "check_quantity", "eligibility", "expire", "is_active", "licences_from_approved", "minor_units",
    "new_proposal", "price_proposal", "reject", "revise", "reports_covered_through", "round_cents", "served_on", "submit",
    "trial_licences",
]
