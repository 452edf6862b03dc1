"""Azure Personalizer's request and response shapes (its REST API v1.0, v1.1-preview.x and 2022-09-01-preview,
as its SDKs send and read them), as pydantic models: requests are validated with them, /openapi.json is built
from them.

Field names are Personalizer's (camelCase). Unlike our /v1 models, fields Personalizer does not define are
ignored rather than refused, as Personalizer itself did: clients written against it may send them. Types are
strict. Feature objects (``contextFeatures``, action ``features``) are any JSON objects here; their shapes are
checked by ``recommender.service.personalizer.features``, which names the JSON path of a bad one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StrictBool, StrictInt, StringConstraints

from recommender.service.schemas import Identifier, Number

# Personalizer allowed 256 characters; our records hold at most MAX_EVENT_ID_LENGTH (documented). One rule for
# every id, the /v1 one: no control characters.
EventId = Identifier
ActionId = Identifier  # item ids are record ids too (candidate ids, user ids)
SlotId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
FeatureObjects = Annotated[list[dict[str, JsonValue]], Field(max_length=256)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class PersonalizerRankableAction(_Request):
    """An action and its features (a list of JSON objects, merged)."""

    id: ActionId
    features: FeatureObjects = Field(default=[], description="list of JSON objects; nested objects are namespaces")


class PersonalizerRankRequest(_Request):
    """``POST .../rank``. ``userId`` is our extension: the user's features come from the feature store."""

    contextFeatures: FeatureObjects | None = Field(default=None, description="list of JSON objects, merged")
    actions: list[PersonalizerRankableAction] = Field(
        min_length=1, description="ids unique; at most service.max_candidates; the first non-excluded is the baseline"
    )
    excludedActions: list[ActionId] | None = Field(default=None, description="action ids left out of the decision")
    eventId: EventId | None = Field(default=None, description="generated (uuid4) when absent")
    deferActivation: StrictBool | None = Field(
        default=False, description="learn from the event only once it is activated (.../events/{eventId}/activate)"
    )
    userId: ActionId | None = Field(default=None, description="our extension: read this user's stored features")


class PersonalizerSlotRequest(_Request):
    """A slot of a multi-slot rank request."""

    id: SlotId
    baselineAction: ActionId = Field(description="the action shown in this slot without personalization")
    features: FeatureObjects | None = Field(
        default=None, description="accepted and not used: a slot is known to the model by its position"
    )
    excludedActions: list[ActionId] | None = Field(
        default=None, description="not supported unless empty (every slot ranks the same candidates)"
    )


class PersonalizerMultiSlotRankRequest(_Request):
    """``POST .../multislot/rank``."""

    contextFeatures: FeatureObjects | None = None
    actions: list[PersonalizerRankableAction] = Field(min_length=1)
    slots: list[PersonalizerSlotRequest] = Field(min_length=1, description="at most as many as actions; ids unique")
    eventId: EventId | None = None
    deferActivation: StrictBool | None = False
    userId: ActionId | None = None


class PersonalizerRewardRequest(_Request):
    """``POST .../events/{eventId}/reward``."""

    value: Number = Field(description="within join.reward_range (default [-1, 1], Personalizer's range)")


class PersonalizerSlotReward(_Request):
    slotId: SlotId
    value: Number


class PersonalizerMultiSlotRewardRequest(_Request):
    """``POST .../multislot/events/{eventId}/reward``."""

    reward: list[PersonalizerSlotReward] = Field(min_length=1)


class PersonalizerRankedAction(BaseModel):
    id: str
    probability: float = Field(ge=0, le=1)


class PersonalizerRankResponse(BaseModel):
    """201 of a rank: every action ranked (excluded ones last, probability 0)."""

    eventId: str
    ranking: list[PersonalizerRankedAction]
    rewardActionId: str


class PersonalizerSlotResponse(BaseModel):
    id: str
    rewardActionId: str


class PersonalizerMultiSlotRankResponse(BaseModel):
    """201 of a multi-slot rank."""

    eventId: str
    slots: list[PersonalizerSlotResponse]


class PersonalizerErrorDetail(BaseModel):
    code: str = Field(description="e.g. BadRequest, InvalidRankRequest, ResourceNotFound, Unauthorized")
    message: str = Field(description="what was wrong, naming the JSON path")
    target: str | None = Field(default=None, description="the JSON path at fault")
    details: list[PersonalizerErrorDetail] | None = None


class PersonalizerErrorResponse(BaseModel):
    """Every 4xx/5xx of the Personalizer API: ``{"error": {"code", "message", "target", "details"}}``."""

    error: PersonalizerErrorDetail


# The administration API (``admin``). Requests ignore unknown fields, as the ranking ones do.
Duration = Annotated[str, Field(description="ISO 8601 duration, e.g. PT5M, PT30S, P1D")]


class PersonalizerServiceConfigurationUpdate(_Request):
    """``PUT .../configurations/service``: the fields to change (a field left out keeps its value)."""

    rewardWaitTime: Duration | None = Field(default=None, description="join.reward_wait_time (at the next start)")
    defaultReward: Number | None = Field(default=None, description="join.default_reward")
    rewardAggregation: str | None = Field(default=None, description="join.aggregation (earliest = first)")
    explorationPercentage: Number | None = Field(default=None, description="epsilon of epsilon_greedy, in [0, 1]")
    modelExportFrequency: Duration | None = Field(default=None, description="trainer.model_update_interval")
    learningMode: str | None = Field(default=None, description="Online, Apprentice or LoggingOnly (trainer.mode)")
    logRetentionDays: StrictInt | None = Field(default=None, description="only -1 (the event log is kept)")
    modelRetrainDays: StrictInt | None = Field(default=None, description="only 0")
    logMirrorEnabled: StrictBool | None = Field(default=None, description="only false")
    isAutoOptimizationEnabled: StrictBool | None = Field(default=None, description="only false")


class PersonalizerServiceConfiguration(BaseModel):
    """``GET .../configurations/service`` and the answer of a PUT: the settings in force."""

    rewardWaitTime: str
    defaultReward: float
    rewardAggregation: str
    explorationPercentage: float
    modelExportFrequency: str
    learningMode: str
    logRetentionDays: int
    modelRetrainDays: int
    logMirrorEnabled: bool
    isAutoOptimizationEnabled: bool


class PersonalizerPolicyUpdate(_Request):
    """``PUT .../configurations/policy``: only ``--epsilon`` may differ from the arguments in force."""

    name: str | None = None
    arguments: str = Field(description="VW arguments (--cb_explore_adf ...)")


class PersonalizerPolicy(BaseModel):
    """The learning policy in force: a name and its VW arguments."""

    name: str
    arguments: str


class PersonalizerModelProperties(BaseModel):
    creationTime: str
    lastModifiedTime: str


class PersonalizerDateRange(BaseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str


class PersonalizerLogsProperties(BaseModel):
    dateRange: PersonalizerDateRange


class PersonalizerPolicyReference(_Request):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(description="VW arguments, mapped like a learning-policy file")


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC (a time without an offset is taken as UTC). Raises ValueError for an instant that
    has no UTC year between 1 and 9999 (e.g. 9999-12-31T23:00:00-05:00)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC is outside the years 1 to 9999") from None


# A date and time in ISO 8601, turned into UTC as it is parsed.
UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]


class PersonalizerEvaluationRequest(_Request):
    """``PUT .../evaluations/{id}``: replay these policies over the event log's decisions in [startTime, endTime)."""

    name: str = Field(min_length=1, max_length=256)
    startTime: UtcDatetime
    endTime: UtcDatetime
    policies: list[PersonalizerPolicyReference] | None = Field(default=None, max_length=20)
    enablePolicyOptimization: StrictBool | None = Field(default=False, description="add a learning-rate search")


class PersonalizerFeatureImportanceRequest(_Request):
    """``PUT .../featureImportances/{id}``: the configured setting's feature importance over [startTime, endTime)."""

    name: str = Field(min_length=1, max_length=256)
    startTime: UtcDatetime
    endTime: UtcDatetime
