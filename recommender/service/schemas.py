"""The HTTP contract as pydantic models: requests are validated with them, /openapi.json is built from
them. Unknown fields are refused (``extra="forbid"``) and types are strict (no "1" for 1, no true for 1).

Feature values (context and inline candidate features) are what the feature store holds: a finite number,
a string, a list of strings (tags) or a list of numbers (a vector). Feature names are letters, digits and
``_``, because they become Vowpal Wabbit feature names.

Numbers (feature values, rewards, slots) lie within +-(2^53 - 1), integer or not: beyond it JSON integers are
not interoperable (I-JSON, RFC 7493: a JavaScript client or the float VW computes with cannot tell 2^53 from
2^53 + 1), and magnitudes that large would swamp a linear model (VW squares feature values in float32). Such
a number is refused (400 naming the field), not rounded; the published schema says so (minimum, maximum).

Ids (event, user, candidate, reward ids; the event id of the activation path) hold no control characters,
C0 (U+0000..U+001F), DEL or C1 (U+0080..U+009F): they end up in logs, URLs and Redis keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from recommender.records import MAX_EVENT_ID_LENGTH
from recommender.service.fallback import DegradedReason

MAX_FEATURES = 256
MAX_LIST = 4096
MAX_STRING = 512
MAX_EXCLUDED = 10_000

# JSON's interoperable integers (RFC 7493), the bound of every number (see the module docstring).
MAX_SAFE_INTEGER = 2**53 - 1

# No control characters, C0, DEL or C1 (see the module docstring).
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_EVENT_ID_LENGTH, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]
# An event id in a path (``/v1/events/{event_id}/activate``): checked, and published, as a body's ids are.
EVENT_ID = TypeAdapter(Identifier)
FeatureName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
SafeInt = Annotated[StrictInt, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
Number = Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)] | SafeInt
Text = Annotated[str, StringConstraints(max_length=MAX_STRING)]
FeatureValue = Number | Text | Annotated[list[Text], Field(max_length=MAX_LIST)] | Annotated[
    list[Number], Field(max_length=MAX_LIST)
]
# additionalProperties: the generated schema lists the name pattern but would otherwise allow other names.
Features = Annotated[
    dict[FeatureName, FeatureValue],
    Field(max_length=MAX_FEATURES, json_schema_extra={"additionalProperties": False}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Candidate(_Strict):
    """A candidate with request-time features, which override the feature store's of the same name."""

    id: Identifier
    features: Features = {}


class ScoreRequest(_Strict):
    """``POST /v1/score``."""

    event_id: Identifier | None = Field(default=None, description="generated (uuid4) when absent")
    user_id: Identifier | None = Field(default=None, description="the user's features come from the feature store")
    context: Features = Field(default={}, description="request-time features, e.g. device, hour")
    candidates: list[Identifier | Candidate] = Field(
        min_length=1, description="ids, or objects with inline features; unique; at most service.max_candidates"
    )
    excluded: Annotated[list[Identifier], Field(max_length=MAX_EXCLUDED)] = Field(
        default=[], description="candidate ids never to rank (left out of the decision)"
    )
    slots: StrictInt | None = Field(
        default=None, ge=1, le=MAX_SAFE_INTEGER, description="fill this many slots (multi-slot decision)"
    )
    defer_activation: StrictBool = Field(
        default=False, description="learn from this decision only once POST /v1/events/{event_id}/activate"
    )

    @field_validator("candidates")
    @classmethod
    def _unique(cls, candidates: list[str | Candidate]) -> list[str | Candidate]:
        ids = [candidate if isinstance(candidate, str) else candidate.id for candidate in candidates]
        if len(set(ids)) != len(ids):  # checked in C first: duplicates are rare
            seen: set[str] = set()
            for i, cid in enumerate(ids):
                if cid in seen:
                    raise ValueError(f"duplicate candidate id at index {i}")
                seen.add(cid)
        return candidates


class PlainScoreRequest(ScoreRequest):
    """A ``ScoreRequest`` whose candidates are all plain ids, the usual request. Validating ids alone skips
    trying each of them against the union with ``Candidate``: 35 against 140 us at 200 candidates (measured,
    pydantic 2). Any body it accepts, ``ScoreRequest`` accepts with the same value; ``parse_score_request``
    tries it first on bodies that can hold no more than one candidate object."""

    candidates: list[Identifier] = Field(min_length=1)


def parse_score_request(body: bytes) -> ScoreRequest:
    """``POST /v1/score``'s body, validated. Raises ``ValidationError``, ``ScoreRequest``'s own: its errors
    name the fields whatever the candidates' form."""
    # Each candidate object opens a brace. With at most two (the body's and the context's), the candidates
    # are plain ids or a single object, and the plain model is tried first. More braces (objects, or braces
    # inside strings) go straight to the full model: the plain one would make an error of every object
    # before failing (measured: 750 against 450 us for 200 objects).
    if body.count(b"{") <= 2:
        try:
            return PlainScoreRequest.model_validate_json(body)
        except ValidationError:  # an object among the candidates, or an invalid body: the full model decides
            pass
    return ScoreRequest.model_validate_json(body)


class RewardRequest(_Strict):
    """``POST /v1/reward``."""

    event_id: Identifier
    reward: Number = Field(description="within join.reward_range (default [-1, 1])")
    slot: StrictInt = Field(default=0, ge=0, le=MAX_SAFE_INTEGER, description="which slot of a multi-slot decision")
    reward_id: Identifier | None = Field(
        default=None,
        description="makes the report idempotent: a retry with the same reward_id (or Idempotency-Key header) for "
        "the same event_id is a no-op answered like the first (204), while the decision is pending and for "
        "join.recovery_seconds after its join",
    )


class RankedItem(BaseModel):
    id: str
    probability: float = Field(ge=0, le=1, description="slot-0 probability this item had of being chosen")


class SlotItem(BaseModel):
    slot: int = Field(ge=0)
    id: str
    probability: float = Field(ge=0, le=1, description="probability with which this item was drawn for the slot")


class PolicyInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    exploration: str = Field(description="exploration algorithm; its parameters follow as further fields")


class ScoreResponse(BaseModel):
    """The decision: every non-excluded candidate ranked; the item to report rewards for."""

    event_id: str
    ranking: list[RankedItem]
    reward_action_id: str
    slots: list[SlotItem] | None = Field(default=None, description="present only when the request gave slots")
    model_version: str
    policy: PolicyInfo
    degraded: bool = Field(description="true when features or model were unavailable and a fallback decided")
    degraded_reason: DegradedReason | None = Field(
        default=None,
        description="present only when degraded: why. feature_store_unavailable, "
        "feature_read_failed, features_not_loaded (default features); shed (overload: decided without the "
        "model); no_model, policy_error (uniform at random). The first that applies, in that order",
    )
    experiment: str | None = Field(default=None, description="present only while an experiment runs: its name")
    arm: str | None = Field(default=None, description="present only while an experiment runs: the user's arm "
                            "(by a hash of the user id, sticky for the experiment's life)")  # fmt: skip


class ErrorResponse(BaseModel):
    error: str = Field(description="stable machine-readable code, e.g. invalid_request")
    message: str = Field(description="what was wrong, naming the field")
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    healthy: bool = True
    checks: dict[str, Any]
    reasons: list[str] = []
