"""The search space: ``search_space.yaml`` beside params.yaml, validated like params before any trial runs.

Every key is a dotted path into params.yaml (``train.lr``, ``train.stage1.max_steps``,
``train.overrides.attention.head_lr``). A key that does not exist, a range that holds nothing or a value
the parameter itself refuses is an error naming the key, so a typo costs seconds, not a study of
trials that all sampled nothing. Values that are only invalid together (``chunking.overlap`` against
``chunking.chunk_tokens``) can only be judged per trial: such a trial fails with the params model's
message and the study goes on.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from longdoc.config.params import NOT_SHAPING, Params, TrainParams
from longdoc.errors import LongdocError

DEFAULT_SPACE = "search_space.yaml"
# Sections whose values cannot change what a trial measures, or that change the yardstick itself.
NOT_SEARCHABLE = {
    "data": "it changes the corpus slice and the validation split, so trials would not be scored on the same "
            "documents",
    "evaluate": "it only shapes the test-set evaluation, which a trial never runs",
    "registry": "it does not change what a trial learns",
    "serving": "it does not change what a trial learns",
    "pipeline": "it does not change what a trial learns",
}
# Train settings set as a whole or not shaping the model (config.NOT_SHAPING): searching them measures nothing.
NOT_A_HYPERPARAMETER = NOT_SHAPING | {"two_stage", "stage1", "end_to_end"}
NESTED_FORBIDDEN = {"variants", "overrides", "two_stage", "stage1"}
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatRange(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _a_range(self) -> FloatRange:
        _check_range(self.low, self.high, self.log, self.step)
        return self

    def holds(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def probes(self) -> list[Any]:
        return [self.low, self.high]


class IntRange(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _a_range(self) -> IntRange:
        _check_range(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self

    def holds(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def probes(self) -> list[Any]:
        return [self.low, self.high]


class Categorical(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar]

    @model_validator(mode="after")
    def _some_choices(self) -> Categorical:
        if not self.choices:
            raise ValueError("empty choices: a categorical needs at least two values")
        if len(self.choices) == 1:
            raise ValueError(f"one choice ({self.choices[0]!r}) is not a search: set it in params.yaml")
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"a choice is listed twice in {self.choices}")
        return self

    def holds(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)

    def probes(self) -> list[Any]:
        return list(self.choices)


Dimension = Annotated[FloatRange | IntRange | Categorical, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be finite numbers, got {low} and {high}")
    if low > high:
        raise ValueError(f"empty range: low ({low}) is above high ({high})")
    if low == high:
        raise ValueError(f"empty range: low equals high ({low}); one value is not a search: set it in params.yaml")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")
    if log and step is not None:
        raise ValueError("step and log cannot be combined (Optuna samples a log range continuously)")
    if step is not None and step > high - low:
        raise ValueError(f"empty range: step {step} is wider than the range [{low}, {high}]")


class SamplerSettings(_Strict):
    """Optuna's TPE sampler: ``n_startup_trials`` random trials first, then the model of good and bad ones."""

    seed: int | None = 13
    n_startup_trials: int = Field(10, ge=0)


class PrunerSettings(_Strict):
    """Optuna's median pruner on the validation macro-F1 reported at each validation of a trial."""

    n_startup_trials: int = Field(5, ge=0, description="Completed trials before any is pruned.")
    n_warmup_steps: int = Field(0, ge=0, description="Steps of a trial before it may be pruned.")
    interval_steps: int = Field(1, ge=1)


class SearchSpace(_Strict):
    study: str = Field("longdoc-tune", min_length=1, description="Default study name (a resume uses the same).")
    sampler: SamplerSettings = SamplerSettings()
    pruner: PrunerSettings = PrunerSettings()
    space: dict[str, Dimension] = Field(min_length=1)
    enqueue: list[dict[str, Scalar]] = Field(default_factory=list, description="Trials to run first, before the "
                                             "sampler's own: e.g. params.yaml's current values.")

    def distributions(self) -> dict:
        """The Optuna distributions of the space (imports Optuna)."""
        import optuna.distributions as d

        made = {}
        for key, dim in self.space.items():
            if isinstance(dim, FloatRange):
                made[key] = d.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
            elif isinstance(dim, IntRange):
                made[key] = d.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
            else:
                made[key] = d.CategoricalDistribution(dim.choices)
        return made


def searchable_keys() -> list[str]:
    """Every key a space may name (for suggestions): each section field, and each train field under
    ``train.stage1`` and ``train.overrides.<variant>``."""
    from longdoc.models import VARIANTS

    keys = []
    for section, info in Params.model_fields.items():
        if section in NOT_SEARCHABLE:
            continue
        keys += [f"{section}.{f}" for f in info.annotation.model_fields
                 if not (section == "train" and f in NOT_A_HYPERPARAMETER)]
    nested = [f for f in TrainParams.model_fields if f not in NESTED_FORBIDDEN | NOT_SHAPING]
    keys += [f"train.stage1.{f}" for f in nested]
    keys += [f"train.overrides.{v}.{f}" for v in sorted(VARIANTS) for f in nested]
    return keys


def _owner(key: str) -> tuple[type[BaseModel], str]:
    """The model and field a key sets, or a LongdocError saying why it cannot be searched."""
    from longdoc.models import VARIANTS

    parts = key.split(".")
    section = parts[0]
    if section in NOT_SEARCHABLE and section in Params.model_fields:
        raise LongdocError(f"search space key {key!r}: the {section} section cannot be searched: "
                           f"{NOT_SEARCHABLE[section]}")
    if section == "train" and len(parts) >= 2 and parts[1] in ("stage1", "overrides"):
        field = parts[-1]
        expected = 3 if parts[1] == "stage1" else 4
        if len(parts) == expected and parts[1] == "overrides" and parts[2] not in VARIANTS:
            raise LongdocError(f"search space key {key!r}: {parts[2]!r} is not a variant; known: "
                               f"{', '.join(sorted(VARIANTS))}")
        if len(parts) == expected and field in TrainParams.model_fields and field not in NESTED_FORBIDDEN | NOT_SHAPING:
            return TrainParams, field
    elif len(parts) == 2 and section in Params.model_fields:
        model = Params.model_fields[section].annotation
        field = parts[1]
        if field in model.model_fields and not (section == "train" and field in NOT_A_HYPERPARAMETER):
            return model, field
        if section == "train" and field in NOT_A_HYPERPARAMETER:
            raise LongdocError(f"search space key {key!r} cannot be searched: it does not change what a trial "
                               "learns, or is set as a whole (search train.stage1.<name> or "
                               "train.overrides.<variant>.<name> instead)")
    close = difflib.get_close_matches(key, searchable_keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise LongdocError(f"search space key {key!r} is not a parameter of params.yaml{hint}")


def _message(error: dict) -> str:
    """One line per error, naming a space entry by its dotted key (``space[train.lr]``), not pydantic's path."""
    loc = list(error["loc"])
    if loc[:1] == ["space"] and len(loc) >= 2:
        where = f"space[{loc[1]}]" + "".join(f".{p}" for p in loc[3:])  # loc[2] is the type tag
    else:
        where = ".".join(str(p) for p in loc)
    return f"  {where}: {error['msg'].removeprefix('Value error, ')}"


def _check_values(key: str, dim, model: type[BaseModel], field: str) -> None:
    """Each bound (and each choice) must be a value the parameter itself accepts.

    Validated alone against the field's model, so only the field's own rules count (a type, a minimum);
    rules that tie it to other values are judged per trial.
    """
    for value in dim.probes():
        try:
            model.model_validate({field: value})
        except ValidationError as err:
            own = [e for e in err.errors() if tuple(e["loc"][:1]) == (field,)]
            if own:
                raise LongdocError(f"search space key {key!r}: {value!r} is not a valid value: "
                                   f"{own[0]['msg']}") from None


def parse_space(raw: dict[str, Any], where: str = "search space") -> SearchSpace:
    """Validate a search-space mapping: its schema, then every key against params and every bound."""
    try:
        space = SearchSpace.model_validate(raw or {})
    except ValidationError as err:
        raise LongdocError(f"invalid {where}:\n" + "\n".join(_message(e) for e in err.errors())) from None
    for key, dim in space.space.items():
        model, field = _owner(key)
        _check_values(key, dim, model, field)
    for i, trial in enumerate(space.enqueue):
        for key, value in trial.items():
            if key not in space.space:
                raise LongdocError(f"enqueue[{i}]: {key!r} is not a key of the search space")
            if not space.space[key].holds(value):
                raise LongdocError(f"enqueue[{i}]: {key}={value!r} is outside its search range")
    return space


def space_path(params_path: Path, space: Path | None) -> Path:
    """``--space``, or ``search_space.yaml`` beside the params file."""
    return space if space is not None else Path(params_path).parent / DEFAULT_SPACE


def load_space(path: Path) -> SearchSpace:
    if not path.is_file():
        raise LongdocError(f"search space file not found: {path} (write one beside params.yaml, see README: Tuning)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LongdocError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise LongdocError(f"{path}: expected a mapping with a `space:` section")
    return parse_space(raw, str(path))


def apply(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params mapping with sampled values laid over it (dotted keys)."""
    import copy

    from longdoc.config.params import set_dotted

    out = copy.deepcopy(raw)
    for key, value in values.items():
        set_dotted(out, key, value)
    return out
