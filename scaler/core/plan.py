"""The plan model, `dynplan/v1alpha1`: pydantic models for one Plan document.

Field names in YAML are camelCase (Kubernetes style); Python attributes are snake_case.
Everything here is pure: parsing a dict, and cross-field checks that return a list of
errors with their field paths. Reading files lives in `scaler.planfile`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from scaler import naming
from scaler.core.limits import MAX_PROFILE_POINTS

API_VERSION = "dynplan/v1alpha1"
KIND = "Plan"
POOL_NAMES_BY_MODE: dict[str, tuple[str, ...]] = {
    "disagg": ("prefill", "decode"),
    "agg": ("worker",),
}

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _takes_number(annotation: Any) -> bool:
    """An int or float field (Optional[...] included); bool is its own type here."""
    if annotation in (int, float):
        return True
    return get_origin(annotation) is Union and any(a in (int, float) for a in get_args(annotation))


class _Model(BaseModel):
    """Base: frozen values, camelCase aliases, unknown fields rejected.

    Two checks hold for every field of every model: a YAML boolean is not a number (lax
    pydantic would read `ttftMs: true` as 1.0), and no string, nor key or string value of a
    mapping, holds a character that the rendered files cannot carry
    (`naming.unrenderable_character`; fields in `_multiline_fields` may hold tab, LF, CR).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )
    _multiline_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, bool) and info.field_name is not None and _takes_number(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"must be a number, got the boolean {str(v).lower()}")
        return v

    @field_validator("*")
    @classmethod
    def _renderable_text(cls, v: Any, info: ValidationInfo) -> Any:
        allow = naming.TEXT_WHITESPACE if info.field_name in cls._multiline_fields else ""
        if isinstance(v, str):
            bad = naming.unrenderable_character(v)
            if bad is not None:
                raise ValueError(f"has a control character or line separator ({bad})")
        elif isinstance(v, dict):
            for key, value in v.items():
                if isinstance(key, str) and (bad := naming.unrenderable_character(key)) is not None:
                    raise ValueError(f"key {key!r} has a control character or line separator ({bad})")
                if isinstance(value, str) and (bad := naming.unrenderable_character(value, allow)) is not None:
                    raise ValueError(f"{key}: has a control character or line separator ({bad})")
        return v


def _label_problems(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes labels (apimachinery ValidateLabels): qualified-name keys, label values."""
    for key, value in labels.items():
        problem = naming.qualified_name_problem(key)
        if problem is not None:
            raise ValueError(f"key {key!r} is not a Kubernetes label key: {problem}")
        if not naming.is_label_value(value):
            raise ValueError(
                f"{key}: {value!r} is not a Kubernetes label value (at most {naming.MAX_LABEL} characters: "
                "letters, digits, '-', '_', '.', starting and ending with a letter or digit, or empty)"
            )
    return labels


class Metadata(_Model):
    name: str = Field(max_length=40)
    namespace: str = Field(default="default", max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # annotation values may be multi-line text, as in Kubernetes
    _multiline_fields: ClassVar[frozenset[str]] = frozenset({"annotations"})

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not naming.DNS1123_LABEL_RE.fullmatch(v):
            raise ValueError(
                "must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _label_problems(v)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        # apimachinery ValidateAnnotations: qualified-name keys (checked lowercased), and
        # keys plus values of all annotations within 256 KiB
        for key in v:
            problem = naming.qualified_name_problem(key.lower())
            if problem is not None:
                raise ValueError(f"key {key!r} is not a Kubernetes annotation key: {problem}")
        size = sum(len(k.encode()) + len(val.encode()) for k, val in v.items())
        if size > naming.MAX_ANNOTATIONS_BYTES:
            raise ValueError(f"are {size} bytes (keys and values); Kubernetes allows at most {naming.MAX_ANNOTATIONS_BYTES}")
        return v


class Sla(_Model):
    """Per-request targets: each request's TTFT and its mean ITL; `attainment` is the
    fraction of requests that must meet both."""

    ttft_ms: PositiveFloat
    itl_ms: PositiveFloat
    attainment: float = Field(default=0.99, ge=0.5, le=0.9999)


class Workload(_Model):
    """Traffic priors, used before any traffic is observed and by `capacity`."""

    isl: PositiveFloat
    osl: PositiveFloat


class ScaleTargetRef(_Model):
    api_version: str = Field(default="apps/v1", min_length=1)
    kind: str = Field(default="Deployment", min_length=1)
    name: str = Field(min_length=1, max_length=253)

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if not naming.API_VERSION_RE.fullmatch(v):
            raise ValueError("must be a Kubernetes apiVersion, e.g. apps/v1 or nvidia.com/v1alpha1")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if not naming.KIND_RE.fullmatch(v):
            raise ValueError("must be a Kubernetes kind, e.g. Deployment (CamelCase)")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not naming.DNS1123_SUBDOMAIN_RE.fullmatch(v):
            raise ValueError("must be a Kubernetes object name (lowercase DNS-1123 subdomain)")
        return v


class Pool(_Model):
    scale_target_ref: ScaleTargetRef
    gpus_per_replica: int = Field(default=1, ge=1, le=1024)
    min_replicas: int = Field(default=1, ge=0, le=10000)
    max_replicas: int = Field(default=16, ge=1, le=10000)
    # seconds from a replica being requested to it serving (image pull, weights, warm-up);
    # the attainment sizing holds capacity this long before giving it up
    startup_seconds: int = Field(default=120, ge=0, le=3600)
    # label matchers that pick this pool's engine pods' series (vLLM, SGLang): a value is
    # matched exactly, or with the operator it starts with: "=~regex", "!=value", "!~regex"
    selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("selector")
    @classmethod
    def _matchers(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            problem = naming.prom_label_name_problem(key)
            if problem is not None:
                raise ValueError(problem)
            if value[:2] in ("=~", "!~"):
                try:
                    re.compile(value[2:])
                except re.error as exc:
                    raise ValueError(f"{key}: {value[2:]!r} is not a regular expression ({exc})") from None
                problem = re2_problem(value[2:])
                if problem is not None:
                    raise ValueError(f"{key}: {value[2:]!r}: {problem}")
        return v


# Python's syntax that Prometheus' Go (RE2) regexps refuse: every query and rule with such a
# matcher fails to parse ("invalid or unsupported Perl syntax"), so the plan never decides.
_PERL_ONLY_GROUPS = {"(?=": "lookahead", "(?!": "negative lookahead", "(?<=": "lookbehind", "(?<!": "negative lookbehind",
                     "(?>": "an atomic group", "(?#": "a comment group", "(?(": "a conditional group", "(?P=": "a backreference"}


def re2_problem(pattern: str) -> Optional[str]:
    """What in `pattern` (already a valid Python regex) Prometheus' RE2 syntax refuses, or
    None: lookaround, atomic, comment and conditional groups, backreferences, possessive
    quantifiers. Escapes and character classes are skipped as the parser would."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if not in_class and pattern[i + 1:i + 2] in tuple("123456789"):
                return f"backreference {pattern[i:i + 2]!r} is not supported by Prometheus (RE2)"
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 3 if pattern[i + 1:i + 3] == "^]" else 1  # a leading ] is literal
            continue
        elif ch == "(":
            for opener, what in _PERL_ONLY_GROUPS.items():
                if pattern.startswith(opener, i):
                    return f"{what} {opener!r} is not supported by Prometheus (RE2)"
        elif ch in "*+?}" and pattern[i + 1:i + 2] == "+":
            return f"possessive quantifier {pattern[i:i + 2]!r} is not supported by Prometheus (RE2)"
        i += 1
    return None


class Pools(_Model):
    prefill: Optional[Pool] = None
    decode: Optional[Pool] = None
    worker: Optional[Pool] = None


class Budget(_Model):
    max_gpus: Optional[int] = Field(default=None, ge=1)


class KalmanParams(_Model):
    q_level: PositiveFloat = 1.0
    q_trend: PositiveFloat = 0.1
    r: PositiveFloat = 10.0


class ArimaParams(_Model):
    window: int = Field(default=100, ge=5, le=10000)


class ProphetParams(_Model):
    window: int = Field(default=50, ge=5, le=10000)


class PredictorSpec(_Model):
    """spec.scaling.throughput.predictor: which forecaster and its parameters (the
    forecasters themselves are scaler.core.predictors)."""

    type: Literal["constant", "kalman", "arima", "prophet"] = "kalman"
    log1p: bool = Field(default=False, alias="log1p")  # to_camel would spell it "log1P"
    min_points: int = Field(default=5, ge=1, le=1000)
    kalman: KalmanParams = KalmanParams()
    arima: ArimaParams = ArimaParams()
    prophet: ProphetParams = ProphetParams()


class Queueing(_Model):
    """Queueing-aware prefill sizing (dynplan's addition; off = Dynamo's throughput formula).

    Prefill replicas are also sized so that the mean TTFT, service plus queueing delay,
    stays within the SLA at the predicted rate, with a traffic variability factor learned
    from observed TTFT (Kingman's approximation). See docs/decision-logic.md.
    """

    enabled: bool = False
    decay: float = Field(default=0.2, gt=0, le=1)
    max_factor: float = Field(default=1000.0, ge=1, le=1e6)
    min_requests: int = Field(default=20, ge=1)


class ThroughputScaling(_Model):
    enabled: bool = True
    # attainment: size for spec.sla.attainment of requests (queueing tails, bursts, backlog);
    # dynamo: Dynamo's formulas exactly (mean rate / capacity)
    sizing: Literal["attainment", "dynamo"] = "attainment"
    interval_seconds: int = Field(default=180, ge=10, le=86400)
    predictor: PredictorSpec = PredictorSpec()
    correction: bool = True
    queueing: Queueing = Queueing()


class LoadScaling(_Model):
    enabled: bool = False
    interval_seconds: int = Field(default=10, ge=1, le=3600)
    window: int = Field(default=50, ge=2, le=100000)
    min_observations: int = Field(default=5, ge=2, le=100000)
    scale_down_sensitivity: float = Field(default=80.0, ge=0, le=100)
    # a scale-down needs the down verdict on every load tick over this long (0: at once)
    scale_down_delay_seconds: int = Field(default=60, ge=0, le=3600)


class Scaling(_Model):
    throughput: ThroughputScaling = ThroughputScaling()
    load: LoadScaling = LoadScaling()


# Fields a plan may no longer set: credentials and TLS settings belong to whoever runs the
# scaler (`dynplan serve --credentials FILE`), a plan only names one of its entries.
_OPERATOR_FIELDS = ("bearerTokenFile", "basicAuth", "caFile", "insecureSkipVerify")
_URL_HOST_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\]")
_URL_PATH_RE = re.compile(r"(/[-A-Za-z0-9._~!$&'()*+,;=:@]*)*")


# Browsers and proxies commonly cap URLs near 2 KiB; a Prometheus base URL is far shorter.
MAX_URL_LENGTH = 2048


def http_url_problem(url: str) -> Optional[str]:
    """Why `url` is not a plain http(s) base URL (scheme, host, optional port and path;
    no user or password, query, fragment, whitespace or control characters), or None."""
    if not re.fullmatch(r"[\x21-\x7e]+", url):
        return "must not contain whitespace, control or non-ASCII characters"
    if len(url) > MAX_URL_LENGTH:
        return f"is {len(url)} characters long; at most {MAX_URL_LENGTH} are accepted"
    m = re.fullmatch(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)(?P<path>[^?#]*)(?P<rest>[?#].*)?", url)
    if m is None or m["scheme"] not in ("http", "https"):
        return "must be an http:// or https:// URL"
    netloc = m["netloc"]
    if "@" in netloc:
        return (
            "must not carry a user or password: credentials live in the scaler's --credentials "
            "file; name its entry in spec.metrics.prometheus.credentials"
        )
    host, port = netloc, None
    hp = re.fullmatch(r"(?P<host>\[[^\]]*\]|[^:]*)(:(?P<port>[^:]*))?", netloc)
    if hp is not None:
        host, port = hp["host"], hp["port"]
    if not host or not _URL_HOST_RE.fullmatch(host):
        return "must name a host (a DNS name, an IPv4 address or a bracketed IPv6 address)"
    if port is not None and not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        return "must have a port between 1 and 65535 after the host"
    if m["rest"]:
        return "must not have a query (?) or fragment (#): it is the base URL of the HTTP API"
    path = m["path"]
    if not _URL_PATH_RE.fullmatch(path) or any(seg in (".", "..") for seg in path.split("/")):
        return "path must be plain segments (letters, digits, -._~ and the like; no %-escapes, '.' or '..')"
    return None


class PrometheusAccess(_Model):
    url: str = Field(min_length=1, max_length=2048)
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=5)
    # the name of an entry in the scaler's --credentials file (auth and TLS settings)
    credentials: Optional[str] = Field(default=None, min_length=1, max_length=63)

    @model_validator(mode="before")
    @classmethod
    def _no_operator_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            snake = {"bearer_token_file": "bearerTokenFile", "basic_auth": "basicAuth",
                     "ca_file": "caFile", "insecure_skip_verify": "insecureSkipVerify"}
            found = [f for f in _OPERATOR_FIELDS if f in data] + [snake[k] for k in snake if k in data]
            if found:
                raise ValueError(
                    f"{', '.join(found)}: no longer plan fields; credentials and TLS settings live in "
                    "the scaler's own --credentials file (owned by whoever runs the scaler), and a plan "
                    "names one of its entries: spec.metrics.prometheus.credentials: NAME"
                )
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        problem = http_url_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("credentials")
    @classmethod
    def _credentials_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not naming.DNS1123_LABEL_RE.fullmatch(v):
            raise ValueError("must be the name of a --credentials entry (a DNS-1123 label)")
        return v


class Metrics(_Model):
    # whose series the scaler reads (scaler.sources.SOURCES; docs/metrics-sources.md)
    source: Literal["dynamo", "vllm", "sglang"] = "dynamo"
    selector: dict[str, str] = Field(default_factory=dict)
    prometheus: PrometheusAccess = PrometheusAccess(url="http://prometheus-operated.monitoring:9090")
    use_recording_rules: bool = True
    # how often Prometheus scrapes the engines (kube-prometheus-stack's default: 30 s); a
    # window shorter than two scrapes holds fewer than two samples and reads nothing
    scrape_interval_seconds: int = Field(default=30, ge=1, le=3600)

    @field_validator("selector")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            problem = naming.prom_label_name_problem(key)
            if problem is not None:
                raise ValueError(problem)
        return v


class ScalerEndpoint(_Model):
    address: str = Field(default="dynplan-scaler.keda:9090", min_length=1)
    namespace: Optional[str] = Field(default=None, max_length=63)
    # Where `render manifests` puts the plan's ConfigMap: the scaler's namespace (where its
    # collector watches by default) or the plan's own, so that a namespace-scoped team can
    # apply everything it renders; unset: `render --plan-configmap-namespace` (default scaler).
    plan_config_map_namespace: Optional[Literal["plan", "scaler"]] = None

    @field_validator("address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        m = re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:(\d{1,5})", v)
        if m is None or not 1 <= int(m[1]) <= 65535:
            raise ValueError("must be host:port, the port 1..65535")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not naming.DNS1123_LABEL_RE.fullmatch(v):
            raise ValueError(
                "must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v


class FallbackSpec(_Model):
    """spec.keda.fallback: what KEDA scales to while the scaler fails (rendered by
    scaler.render.objects.fallback)."""

    failure_threshold: int = Field(default=3, ge=0, le=1000)
    behavior: Literal[
        "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"
    ] = "currentReplicasIfHigher"
    replicas: Optional[int] = Field(default=None, ge=0, le=naming.INT32_MAX)  # int32 in KEDA's CRD


# Kubernetes' HPA API validation (pkg/apis/autoscaling/validation): value > 0,
# 0 < periodSeconds <= 1800, at least one policy per direction.
MAX_POLICY_PERIOD_SECONDS = 1800
MAX_POLICIES = 10


class ScalingPolicySpec(_Model):
    """One HPA scaling policy: at most `value` pods (`Pods`) or percent of the replicas at
    the period's start (`Percent`) per `periodSeconds`."""

    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1, le=naming.INT32_MAX)  # int32 in the HPA API
    period_seconds: int = Field(ge=1, le=MAX_POLICY_PERIOD_SECONDS)


ScalingPolicies = Annotated[tuple[ScalingPolicySpec, ...], Field(min_length=1, max_length=MAX_POLICIES)]


def scale_down_limit_one_period(start: int, policies: tuple[ScalingPolicySpec, ...], select_policy: str) -> int:
    """The fewest replicas the HPA's scale-down policies allow one period after `start`,
    before its [minReplicas, maxReplicas] clamp: `Pods: start - value`, `Percent:
    trunc(start * (1 - value/100))`; `Max` takes the largest change, `Min` the smallest,
    `Disabled` none (kubernetes horizontal.go calculateScaleDownLimitWithBehaviors)."""
    if select_policy == "Disabled":
        return start
    limits = [
        start - p.value if p.type == "Pods" else int(float(start) * (1 - float(p.value) / 100)) for p in policies
    ]
    return min(limits) if select_policy == "Max" else max(limits)


def largest_emptied_start(
    policies: tuple[ScalingPolicySpec, ...], select_policy: str, max_replicas: int
) -> Optional[int]:
    """The largest count from 2 to `max_replicas` that one period of these policies can take
    to 0 (`scale_down_limit_one_period` < 1), or None. Each policy empties a prefix 2..f of
    the counts (its limit never falls as the start grows), so `Max` empties up to the
    largest f, `Min` up to the smallest; O(policies), not O(max_replicas)."""
    if select_policy == "Disabled" or max_replicas < 2:
        return None
    tops: list[int] = []
    for p in policies:
        if p.type == "Pods":
            top = min(p.value, max_replicas)
        elif p.value >= 100:
            top = max_replicas
        else:
            keep = 1 - float(p.value) / 100
            top = min(max_replicas, int(1 / keep) + 1)
            while top >= 2 and int(float(top) * keep) >= 1:  # float edges, as the controller computes
                top -= 1
            while top < max_replicas and int(float(top + 1) * keep) < 1:
                top += 1
        tops.append(top)
    top = max(tops) if select_policy == "Max" else min(tops)
    return top if top >= 2 else None


class Keda(_Model):
    """How the rendered ScaledObjects behave (see docs/plan-spec.md)."""

    trigger_type: Literal["external", "external-push"] = "external"
    polling_interval_seconds: Optional[int] = Field(default=None, ge=1, le=3600)
    cooldown_period_seconds: int = Field(default=300, ge=0, le=naming.INT32_MAX)  # int32 in KEDA's CRD
    fallback: FallbackSpec = FallbackSpec()
    tolerance: Optional[float] = Field(default=None, ge=0, lt=1)
    scale_down_stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    scale_up_stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    # the HPA's rate limits; None: derived per pool (render.objects.behavior)
    scale_down_policies: Optional[ScalingPolicies] = None
    scale_down_select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    scale_up_policies: Optional[ScalingPolicies] = None
    # Disabled would freeze every scale-up the planner asks for
    scale_up_select_policy: Literal["Max", "Min"] = "Max"
    use_cached_metrics: bool = False


class Rules(_Model):
    """Labels and evaluation interval of the rendered recording rules; the SLO alerts.

    `alerts` adds the burn-rate and scaler-health alerts (render/rules.py). The SLI reads
    the latency histograms' bucket at `ttftBucketMs`/`itlBucketMs` (default: the SLA
    itself), which must be one of the engine's bucket bounds: the bound at or just above
    the SLA when the SLA is not one (the SLI is then that bound's, and says so)."""

    labels: dict[str, str] = Field(default_factory=dict)
    evaluation_interval_seconds: Optional[int] = Field(default=None, ge=1, le=3600)
    alerts: bool = True
    ttft_bucket_ms: Optional[PositiveFloat] = Field(default=None, le=3_600_000)
    itl_bucket_ms: Optional[PositiveFloat] = Field(default=None, le=3_600_000)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _label_problems(v)


# A profile number: an int or a float, never a bool or a numeric string (strict), and an
# array of them is flat and bounded, so pydantic refuses nested or huge input before numpy.
ProfileNumber = StrictFloat
ProfileArray = Annotated[list[ProfileNumber], Field(max_length=MAX_PROFILE_POINTS)]


class _ProfileTable(BaseModel):
    """Dynamo's own snake_case keys (no camelCase aliases); unknown keys rejected. A missing
    array stays None here and is reported by `profile_problems` with the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def arrays(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PrefillTable(_ProfileTable):
    prefill_isl: Optional[ProfileArray] = None
    prefill_ttft: Optional[ProfileArray] = None
    prefill_thpt_per_gpu: Optional[ProfileArray] = None


class DecodeTable(_ProfileTable):
    x_kv_usage: Optional[ProfileArray] = None
    y_context_length: Optional[ProfileArray] = None
    z_itl: Optional[ProfileArray] = None
    z_thpt_per_gpu: Optional[ProfileArray] = None
    max_kv_tokens: Optional[ProfileNumber] = None


class ProfileData(_Model):
    """A profile inline, in the shape of Dynamo's `prefill_raw_data.json` / `decode_raw_data.json`.

    Rendered ConfigMaps carry the profile this way, so that one flat key holds a whole plan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    prefill: PrefillTable
    decode: DecodeTable


class PlanSpec(_Model):
    mode: Literal["disagg", "agg"] = "disagg"
    sla: Sla
    workload: Workload
    profile: Optional[str] = None
    profile_data: Optional[ProfileData] = None
    pools: Pools
    budget: Budget = Budget()
    scaling: Scaling = Scaling()
    metrics: Metrics = Metrics()
    scaler: ScalerEndpoint = ScalerEndpoint()
    keda: Keda = Keda()
    rules: Rules = Rules()


class Plan(_Model):
    api_version: Literal["dynplan/v1alpha1"]
    kind: Literal["Plan"]
    metadata: Metadata
    spec: PlanSpec

    # -- convenience -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def pool_names(self) -> tuple[str, ...]:
        return POOL_NAMES_BY_MODE[self.spec.mode]

    def pool(self, name: str) -> Pool:
        pool = getattr(self.spec.pools, name, None)
        if pool is None:
            raise KeyError(name)
        return pool

    @property
    def pools(self) -> dict[str, Pool]:
        return {name: self.pool(name) for name in self.pool_names}

    def bucket_bound_ms(self, sli: str) -> float:
        """The latency histogram's bucket bound (ms) the plan counts as good, for its TTFT or
        ITL: `spec.rules.ttftBucketMs` / `itlBucketMs`, default the SLA. The one rule for the
        SLI, the TTFT-miss fraction and the simulator's count of it."""
        r, sla = self.spec.rules, self.spec.sla
        if sli == "ttft":
            return float(r.ttft_bucket_ms if r.ttft_bucket_ms is not None else sla.ttft_ms)
        if sli == "itl":
            return float(r.itl_bucket_ms if r.itl_bucket_ms is not None else sla.itl_ms)
        raise ValueError(f"sli must be 'ttft' or 'itl', not {sli!r}")


def semantic_errors(plan: Plan) -> list[tuple[str, str]]:
    """Cross-field checks pydantic cannot express per field: (field path, message) pairs."""
    errors: list[tuple[str, str]] = []
    spec = plan.spec
    wanted = POOL_NAMES_BY_MODE[spec.mode]
    for name in ("prefill", "decode", "worker"):
        present = getattr(spec.pools, name) is not None
        if name in wanted and not present:
            errors.append((f"spec.pools.{name}", f"is required in mode {spec.mode!r}"))
        elif name not in wanted and present:
            errors.append(
                (f"spec.pools.{name}", f"is not allowed in mode {spec.mode!r} (pools: {', '.join(wanted)})")
            )
    for name in wanted:
        pool = getattr(spec.pools, name)
        if pool is not None and pool.min_replicas > pool.max_replicas:
            errors.append(
                (
                    f"spec.pools.{name}.maxReplicas",
                    f"must be >= minReplicas ({pool.max_replicas} < {pool.min_replicas})",
                )
            )
    pools = [getattr(spec.pools, n) for n in wanted if getattr(spec.pools, n) is not None]
    if spec.budget.max_gpus is not None and pools:
        floor = sum(p.min_replicas * p.gpus_per_replica for p in pools)
        if floor > spec.budget.max_gpus:
            errors.append(
                (
                    "spec.budget.maxGpus",
                    f"{spec.budget.max_gpus} GPUs cannot hold every pool's minimum ({floor} GPUs)",
                )
            )
    tp, ld = spec.scaling.throughput, spec.scaling.load
    if not tp.enabled and not ld.enabled:
        errors.append(("spec.scaling", "enable at least one of throughput and load scaling"))
    if spec.profile is not None and spec.profile_data is not None:
        errors.append(("spec.profileData", "give either spec.profile or spec.profileData, not both"))
    if tp.enabled and spec.profile is None and spec.profile_data is None:
        errors.append(("spec.profile", "is required when spec.scaling.throughput.enabled is true"))
    if tp.enabled and ld.enabled and ld.interval_seconds >= tp.interval_seconds:
        errors.append(
            (
                "spec.scaling.load.intervalSeconds",
                f"must be shorter than spec.scaling.throughput.intervalSeconds "
                f"({ld.interval_seconds} >= {tp.interval_seconds}) when both are enabled",
            )
        )
    errors.extend(_scale_down_errors(plan))
    if ld.enabled and ld.min_observations > ld.window:
        errors.append(
            (
                "spec.scaling.load.minObservations",
                f"must be <= spec.scaling.load.window ({ld.min_observations} > {ld.window})",
            )
        )
    return errors


def _scale_down_errors(plan: Plan) -> list[tuple[str, str]]:
    """Scale-down settings under which a pool can lose every replica in one HPA period.

    The rendered defaults (Percent 50 per start-up) pass by construction; this checks what a
    plan sets. From 2 to maxReplicas replicas, one period's policies must leave at least one
    (from 1, Kubernetes' truncation takes any Percent policy to 0 and only the HPA's floor of
    one keeps it). With minReplicas 0, HPA scale-down must stay on: KEDA's own scale to zero
    after cooldownPeriodSeconds sets 0 from whatever count the HPA left.
    """
    spec = plan.spec
    k = spec.keda
    errors: list[tuple[str, str]] = []
    for name in POOL_NAMES_BY_MODE[spec.mode]:
        pool = getattr(spec.pools, name)
        if pool is None:
            continue
        if k.scale_down_select_policy == "Disabled" and pool.min_replicas == 0:
            errors.append(
                (
                    "spec.keda.scaleDownSelectPolicy",
                    f"Disabled with spec.pools.{name}.minReplicas 0 lets KEDA take the pool from any count to 0 "
                    "at once after cooldownPeriodSeconds; keep HPA scale-down on (Max or Min)",
                )
            )
        if k.scale_down_policies is None:
            continue
        # the largest count a period can empty is the telling one (Pods 4: "from 4 replicas")
        start = largest_emptied_start(k.scale_down_policies, k.scale_down_select_policy, pool.max_replicas)
        if start is not None:
            rule = "every policy" if k.scale_down_select_policy == "Max" else "one policy"
            errors.append(
                (
                    "spec.keda.scaleDownPolicies",
                    f"let the HPA take pool {name} from {start} replicas to 0 in one period; with selectPolicy "
                    f"{k.scale_down_select_policy} {rule} must keep a replica (Pods 1, or Percent at most 50)",
                )
            )
    return errors
