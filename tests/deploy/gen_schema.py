"""Writes deploy/helm/switchyard/values.schema.json (draft-07).

The schema is kept as Python here because it shares many fragments; the JSON
file is what Helm reads, and test_chart.py checks it is up to date:

    .venv/bin/python tests/deploy/gen_schema.py
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "deploy/helm/switchyard/values.schema.json"


def obj(props, required=(), desc=None, **kw):
    o = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = list(required)
    if desc:
        o["description"] = desc
    o.update(kw)
    return o


S = {"type": "string"}
B = {"type": "boolean"}
INT = {"type": "integer"}
POS = {"type": "integer", "minimum": 1}
NONNEG = {"type": "integer", "minimum": 0}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
RATIO = {"type": "number", "minimum": 0, "maximum": 1}
DURATION = {"type": "string", "minLength": 1, "description": "humantime duration: 500ms, 60s, 1m 30s"}
OPT_DURATION = {"type": "string", "description": "humantime duration, empty: the config's default"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Kubernetes objects passed through as they are (their own API validates them).
K8S_OBJ = {"type": "object"}
K8S_LIST = {"type": "array", "items": {"type": "object"}}
ENV_LIST = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
}
POLICY = {"type": "string", "enum": ["warn", "drop", "reject"]}
KINDS = [
    "openai", "azure-openai", "anthropic", "gemini", "bedrock", "mistral", "deepseek", "groq",
    "together", "xai", "fireworks", "openrouter", "perplexity", "cerebras", "vllm", "ollama", "demo",
]
ENV_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
SECRET_NAME = {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"}
PULL_POLICY = {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]}
# Exact decimal dollars: a number, or a string such as "12.345" (docs/configuration.md).
USD = {"type": ["number", "string"]}
WINDOW = {"type": "string", "enum": ["daily", "weekly", "monthly"]}
# One dimension and its value ("*": each value apart).
SCOPE = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {k: {"type": "string", "minLength": 1} for k in ("key", "team", "user", "model", "provider")},
}
SUBJECT = {"type": "string", "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$"}
TOKEN = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}


def autoscaling(memory=False):
    props = {
        "enabled": B,
        "minReplicas": POS,
        "maxReplicas": POS,
        "targetCPUUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
    }
    if memory:
        props["targetMemoryUtilizationPercentage"] = {"type": ["integer", "null"], "minimum": 1}
    return obj(props)


def worker_settings():
    return obj(
        {
            "replicas": NONNEG,
            "resources": K8S_OBJ,
            "autoscaling": autoscaling(),
            "terminationGracePeriodSeconds": NONNEG,
            "podAnnotations": STRMAP,
            "podLabels": STRMAP,
            "extraEnv": ENV_LIST,
            "nodeSelector": STRMAP,
            "tolerations": K8S_LIST,
            "affinity": K8S_OBJ,
            "topologySpreadConstraints": K8S_LIST,
        }
    )


def probe():
    return obj(
        {
            "enabled": B,
            "initialDelaySeconds": NONNEG,
            "periodSeconds": POS,
            "timeoutSeconds": POS,
            "failureThreshold": POS,
            "successThreshold": POS,
        }
    )


# providers[].reasoning / models[].reasoning (docs/providers.md, "Reasoning
# and thinking").
REASONING = {"type": "string", "enum": ["auto", "on", "off"]}

PROVIDER = obj(
    {
        # Config keys (docs/configuration.md, providers[]).
        "name": {
            "type": "string",
            "pattern": "^[A-Za-z0-9]([A-Za-z0-9_-]{0,40}[A-Za-z0-9])?$",
            "description": "providers[].name; also part of object names, so it starts and ends with a letter or digit",
        },
        "kind": {"type": "string", "enum": KINDS},
        "base_url": {"type": "string", "pattern": "^https?://"},
        "timeout": DURATION,
        "max_concurrency": POS,
        "max_queue": NONNEG,
        "headers": STRMAP,
        "models": {"type": "array", "items": {"type": "string"}},
        "unsupported_params": POLICY,
        "reasoning": REASONING,
        "data_collection": {"enum": ["allow", "deny"]},
        "api_version": S,
        "region": S,
        "responses": {"enum": ["translate", "native"]},
        "aws": obj({"access_key_id": S, "secret_access_key": S, "session_token": S},
                   desc="bedrock: use ${VAR:-} references and worker.extraEnv; never literals"),
        # The chart's keys.
        "apiKey": obj(
            {
                "existingSecret": SECRET_NAME,
                "key": {"type": "string", "minLength": 1},
                "createSecret": B,
                "value": S,
                "env": ENV_NAME,
            }
        ),
        "worker": worker_settings(),
    },
    required=["name", "kind"],
    desc="providers[]: config keys except api_key / api_key_env (the chart sets api_key_env from apiKey)",
)

ROUTE = obj(
    {
        "provider": {"type": "string", "minLength": 1},
        "model": {"type": "string", "minLength": 1},
        "weight": NONNEG,
        "context_window": POS,
        "capabilities": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "enum": ["tools", "vision", "json_schema"]},
        },
        "price": obj(
            {"input_per_mtok": {"type": "number", "minimum": 0},
             "output_per_mtok": {"type": "number", "minimum": 0}},
            required=["input_per_mtok", "output_per_mtok"],
        ),
    },
    required=["provider", "model"],
)

MODEL = obj(
    {
        "name": {"type": "string", "minLength": 1},
        "strategy": {"type": "string", "enum": ["fallback", "weighted", "cheapest", "fastest", "least-busy"]},
        "routes": {"type": "array", "minItems": 1, "items": ROUTE},
        "retry": obj({"max_attempts": POS, "backoff_base": S, "backoff_max": S}),
        "hedge": obj({"delay": DURATION, "min_delay": S, "max_hedges": POS}, required=["delay"]),
        "first_token_timeout": DURATION,
        "timeout": DURATION,
        "unsupported_params": POLICY,
        "reasoning": REASONING,
        "spend_cap": obj(
            {"limit_usd": USD, "window": WINDOW, "downgrade_to": {"type": "string", "minLength": 1}},
            required=["limit_usd", "window", "downgrade_to"],
        ),
        "cache": obj({"enabled": B, "ttl": DURATION}),
    },
    required=["name", "routes"],
)

# docs/configuration.md `cache`; `switchyard check` validates the rest
# (e.g. that semantic.embedding_model names a model).
CACHE = obj(
    {
        "enabled": B,
        "backend": {"type": "string", "enum": ["memory", "redis"]},
        "ttl": DURATION,
        "max_entry_bytes": POS,
        "max_memory_bytes": POS,
        "cache_tool_calls": B,
        "cache_nonzero_temperature": B,
        "shared_namespace": {"type": "string", "minLength": 1},
        "redis": obj(
            {
                "url": {"type": "string", "pattern": "^(redis|unix)://"},
                "timeout": DURATION,
                "key_prefix": S,
            }
        ),
        "semantic": obj(
            {
                "enabled": B,
                "embedding_model": {"type": "string", "minLength": 1},
                "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "max_entries": POS,
                "max_bucket_entries": POS,
                "max_prompt_bytes": POS,
                "timeout": DURATION,
            }
        ),
    },
    desc="config `cache` without persist/persist_path (pods keep no files); redis.url from the "
    "chart's cache.redis when it is in a Secret",
)

LEDGER = obj(
    {
        "enabled": B,
        # `local` is a file in the pod: lost with it, and never shared.
        "backend": {"type": "string", "enum": ["auto", "jetstream"]},
        "stream": obj(
            {"name": TOKEN, "subject_prefix": SUBJECT, "duplicate_window": DURATION, "max_age": DURATION}
        ),
        "time_zone": {"type": "string", "minLength": 1},
        "writer": obj({"batch_size": POS, "batch_wait": DURATION, "ack_wait": DURATION}),
    },
    desc="config `ledger` without postgres (from the chart's ledger.postgres), path (no local "
    "ledger in pods) and router_id (each router's pod name)",
)

BUDGETS = obj(
    {
        "time_zone": {"type": "string", "minLength": 1},
        "limits": {
            "type": "array",
            "items": obj(
                {
                    "name": {"type": "string", "minLength": 1},
                    "scope": SCOPE,
                    "window": WINDOW,
                    "limit_usd": USD,
                    "action": {
                        "oneOf": [
                            {"type": "string", "enum": ["reject", "alert"]},
                            obj({"downgrade": {"type": "string", "minLength": 1}}, required=["downgrade"]),
                        ]
                    },
                },
                required=["name", "window", "limit_usd", "action"],
            ),
        },
    }
)

ALERTS = obj(
    {
        "webhook": obj(
            {
                "url": {"type": "string", "pattern": "^https?://"},
                "headers": {**STRMAP, "description": "literal headers; secret ones: the chart's alerts.webhookHeaders"},
                "timeout": DURATION,
            },
            required=["url"],
        ),
        "nats_subject": SUBJECT,
        "spikes": {
            "type": "array",
            "items": obj(
                {
                    "name": {"type": "string", "minLength": 1},
                    "scope": SCOPE,
                    "window": DURATION,
                    "threshold_usd": USD,
                    "factor": {"type": "number", "exclusiveMinimum": 1},
                    "baseline": DURATION,
                    "min_spend_usd": USD,
                },
                required=["name", "window"],
            ),
        },
    }
)

# docs/pricing.md; rates and their structure are checked by `switchyard check`.
PRICE = obj(
    {
        "provider": {"type": "string", "minLength": 1},
        "model": {"type": "string", "minLength": 1},
        "aliases": {"type": "array", "items": {"type": "string"}},
        "input": USD,
        "output": USD,
        "cached_input": USD,
        "cache_write": USD,
        "reasoning_output": USD,
        "per_image": {"type": ["number", "string", "object"]},
        "per_audio_second": USD,
        "batch": {"type": "object"},
        "tiers": K8S_LIST,
        "time_windows": K8S_LIST,
        "source": S,
        "as_of": S,
        "notes": S,
    },
    required=["provider", "model"],
)

NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}

# docs/auth.md, docs/configuration.md `auth`. Routers always share a bus
# here, so keys live in JetStream (`auto`) or are `off`: a `local` key file
# would be one per pod and lost with it.
AUTH = obj(
    {
        "keys": obj(
            {
                "store": {"type": "string", "enum": ["auto", "jetstream", "off"]},
                "bucket": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            desc="config `auth.keys` without hash_secret (from the chart's auth.hashSecret) and path "
            "(pods keep no files)",
        ),
        "jwt": obj(
            {
                "issuer": {"type": "string", "minLength": 1},
                "audiences": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "jwks_url": {"type": "string", "pattern": "^https?://"},
                "user_claim": {"type": "string", "minLength": 1},
                "team_claim": {"type": "string", "minLength": 1},
                "role_claim": {"type": "string", "minLength": 1},
                "leeway": DURATION,
                "min_refresh_interval": DURATION,
            },
            required=["issuer", "audiences", "jwks_url"],
            desc="config `auth.jwt` with jwks_url (no jwks_file: the chart mounts no such file)",
        ),
        "access": {
            "type": "array",
            "items": obj(
                {
                    "name": {"type": "string", "minLength": 1},
                    "teams": NAMES,
                    "roles": NAMES,
                    "users": NAMES,
                    "keys": NAMES,
                    "models": {**NAMES, "minItems": 1},
                },
                required=["name", "models"],
            ),
        },
        "allow_unauthenticated": B,
    },
    desc="config `auth`; the hash secret of virtual keys comes from the chart's auth.hashSecret",
)

RATE_LIMIT = obj(
    {
        "name": {"type": "string", "minLength": 1},
        "scope": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                # A single key's limits are set on the key.
                "key": {"type": "string", "enum": ["*"]},
                **{k: {"type": "string", "minLength": 1} for k in ("team", "user", "model")},
                # One role, never each apart.
                "role": {"type": "string", "minLength": 1, "not": {"const": "*"}},
            },
        },
        "rpm": POS,
        "tpm": POS,
    },
    required=["name"],
    anyOf=[{"required": ["rpm"]}, {"required": ["tpm"]}],
)

CONFIG = obj(
    {
        "server": obj(
            {"max_body_bytes": POS, "request_timeout": DURATION, "shutdown_grace": S, "shutdown_delay": S},
            desc="config `server` without the addresses (set from router.ports)",
        ),
        "models": {"type": "array", "items": MODEL},
        "routing": obj(
            {
                "breaker": obj({"failure_threshold": POS, "open_for": DURATION}),
                "default_cooldown": DURATION,
                "exploration": RATIO,
            }
        ),
        "telemetry": obj(
            {
                "otlp_endpoint": S,
                "otlp_protocol": {"type": "string", "enum": ["grpc", "http"]},
                "sampling_ratio": RATIO,
                "record_content": B,
            }
        ),
        "ledger": LEDGER,
        "budgets": BUDGETS,
        "alerts": ALERTS,
        "pricing": obj({"models": {"type": "array", "items": PRICE}}),
        "cache": CACHE,
        "auth": AUTH,
        "rate_limits": {"type": "array", "items": RATE_LIMIT},
        # docs/configuration.md `guardrails`.
        "guardrails": obj(
            {
                "rules": {
                    "type": "array",
                    "items": obj(
                        {
                            "name": {"type": "string", "minLength": 1},
                            "detector": {"type": "string", "enum": ["card", "ssn", "iban", "email", "phone", "secret", "regex"]},
                            "pattern": {"type": "string", "minLength": 1},
                            "action": {"type": "string", "enum": ["block", "redact", "log"]},
                            "models": {"type": "array", "items": S},
                            "teams": {"type": "array", "items": S},
                            "keys": {"type": "array", "items": S},
                            "applies_to": {"type": "string", "enum": ["request", "response", "both"]},
                        },
                        required=["detector", "action"],
                    ),
                }
            }
        ),
        # docs/configuration.md `responses`: `jetstream` needs the bus,
        # which the chart always configures for routers.
        "responses": obj(
            {
                "store": {"type": "string", "enum": ["off", "auto", "local", "jetstream"]},
                "ttl": DURATION,
                "max_bytes_per_response": POS,
                "path": S,
                "bucket": {"type": "string", "minLength": 1},
                "replicas": POS,
            }
        ),
    },
    desc="config file keys as in docs/configuration.md (snake_case)",
)

NAMED_SECRET = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}

SCHEMA = obj(
    {
        "global": {"type": "object", "description": "Helm's global values (unused)"},
        "image": obj({"repository": {"type": "string", "minLength": 1}, "tag": S, "pullPolicy": PULL_POLICY},
                     required=["repository"]),
        "imagePullSecrets": K8S_LIST,
        "nameOverride": S,
        "fullnameOverride": S,
        "commonLabels": STRMAP,
        "logLevel": {"type": "string", "minLength": 1},
        "serviceAccount": obj({"create": B, "name": S, "annotations": STRMAP, "automountServiceAccountToken": B}),
        "podSecurityContext": K8S_OBJ,
        "securityContext": K8S_OBJ,
        "config": CONFIG,
        "providers": {"type": "array", "minItems": 1, "items": PROVIDER},
        "workerDefaults": worker_settings(),
        "nats": obj(
            {
                "url": {"type": "string", "pattern": "^(nats|tls)://"},
                "subjectPrefix": {"type": "string", "pattern": "^([A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*)?$"},
                "ackTimeout": OPT_DURATION,
                "heartbeatInterval": OPT_DURATION,
                "auth": obj(
                    {
                        "type": {"type": "string", "enum": ["none", "token", "userPassword"]},
                        "existingSecret": SECRET_NAME,
                        "createSecret": B,
                        "token": S,
                        "user": S,
                        "password": S,
                        "tokenKey": {"type": "string", "minLength": 1},
                        "userKey": {"type": "string", "minLength": 1},
                        "passwordKey": {"type": "string", "minLength": 1},
                    }
                ),
                "tls": obj({"enabled": B, "caSecret": SECRET_NAME, "caKey": {"type": "string", "minLength": 1}}),
            },
            required=["url"],
        ),
        "router": obj(
            {
                "replicas": NONNEG,
                "resources": K8S_OBJ,
                "ports": obj({"http": PORT, "grpc": PORT}, required=["http", "grpc"]),
                "autoscaling": autoscaling(memory=True),
                "pdb": obj(
                    {
                        "enabled": B,
                        "minAvailable": {"type": ["integer", "string", "null"]},
                        "maxUnavailable": {"type": ["integer", "string", "null"]},
                    }
                ),
                "probes": obj(
                    {"grpcService": S, "startup": probe(), "readiness": probe(), "liveness": probe()}
                ),
                "terminationGracePeriodSeconds": NONNEG,
                "adminToken": obj({"existingSecret": SECRET_NAME, "key": {"type": "string", "minLength": 1}}),
                "podAnnotations": STRMAP,
                "podLabels": STRMAP,
                "extraEnv": ENV_LIST,
                "nodeSelector": STRMAP,
                "tolerations": K8S_LIST,
                "affinity": K8S_OBJ,
                "topologySpreadConstraints": K8S_LIST,
            }
        ),
        "service": obj(
            {
                "type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "annotations": STRMAP,
                "httpPort": PORT,
                "grpcPort": PORT,
            }
        ),
        "ingress": obj(
            {
                "enabled": B,
                "className": S,
                "annotations": STRMAP,
                "hosts": {
                    "type": "array",
                    "items": obj(
                        {
                            "host": S,
                            "paths": {
                                "type": "array",
                                "items": obj(
                                    {"path": S,
                                     "pathType": {"type": "string",
                                                  "enum": ["Prefix", "Exact", "ImplementationSpecific"]}},
                                    required=["path", "pathType"],
                                ),
                            },
                        },
                        required=["host", "paths"],
                    ),
                },
                "tls": K8S_LIST,
            }
        ),
        "ledger": obj(
            {
                "postgres": obj(
                    {
                        "existingSecret": SECRET_NAME,
                        "key": {"type": "string", "minLength": 1},
                        "createSecret": B,
                        # Substituted into a double-quoted YAML string.
                        "url": {"type": "string", "pattern": "^[^\"\\\\]*$"},
                    }
                ),
                "writer": obj(
                    {
                        "enabled": B,
                        "replicas": NONNEG,
                        "consumer": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$",
                                     "description": "JetStream durable consumer; empty: switchyard-ledger-writer"},
                        "resources": K8S_OBJ,
                        "terminationGracePeriodSeconds": NONNEG,
                        "podAnnotations": STRMAP,
                        "podLabels": STRMAP,
                        "extraEnv": ENV_LIST,
                        "nodeSelector": STRMAP,
                        "tolerations": K8S_LIST,
                        "affinity": K8S_OBJ,
                        "topologySpreadConstraints": K8S_LIST,
                    }
                ),
            },
            desc="the usage ledger's PostgreSQL URL (routers and writer) and `switchyard ledger-writer`",
        ),
        "cache": obj(
            {
                "redis": obj(
                    {
                        "existingSecret": SECRET_NAME,
                        "key": {"type": "string", "minLength": 1},
                        "createSecret": B,
                        # Substituted into a double-quoted YAML string.
                        "url": {"type": "string", "pattern": "^[^\"\\\\]*$"},
                    }
                ),
            },
            desc="the response cache's Redis URL from a Secret (routers only)",
        ),
        "alerts": obj(
            {
                "webhookHeaders": {
                    "type": "array",
                    "items": obj(
                        {
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                            "existingSecret": NAMED_SECRET,
                            "key": {"type": "string", "minLength": 1},
                        },
                        required=["name", "existingSecret", "key"],
                    ),
                },
            },
            desc="secret headers of config.alerts.webhook, from Secrets, for the routers only",
        ),
        "otel": obj(
            {
                "endpoint": S,
                "protocol": {"type": "string", "enum": ["", "grpc", "http/protobuf"]},
                "headersSecret": obj({"name": SECRET_NAME, "key": {"type": "string", "minLength": 1}}),
                "resourceAttributes": S,
                "tracesSamplerArg": S,
            }
        ),
        "metrics": obj(
            {
                "serviceMonitor": obj({"enabled": B, "interval": S, "scrapeTimeout": S, "labels": STRMAP}),
                "dashboard": obj({"enabled": B, "namespace": S, "labels": STRMAP, "annotations": STRMAP}),
            }
        ),
        "consul": obj(
            {
                "enabled": B,
                "address": {"type": "string", "pattern": "^https?://"},
                "tokenSecret": obj({"name": SECRET_NAME, "key": {"type": "string", "minLength": 1}}),
                "routerServiceName": {"type": "string", "pattern": "^([A-Za-z0-9-]{1,63})?$"},
                "workerServiceName": {"type": "string", "pattern": "^([A-Za-z0-9-]{1,63})?$"},
                "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string", "minLength": 1}},
                "checkInterval": OPT_DURATION,
                "deregisterCriticalAfter": OPT_DURATION,
                "advertiseAddress": S,
            },
            desc="discovery.consul in the config",
        ),
        "auth": obj(
            {
                "hashSecret": obj({"existingSecret": SECRET_NAME, "key": {"type": "string", "minLength": 1}}),
            },
            desc="the hash secret of virtual keys (config auth.keys.hash_secret) from a Secret, for the routers",
        ),
        "tests": obj(
            {
                "image": obj({"repository": S, "tag": S, "pullPolicy": PULL_POLICY}),
                "model": {"type": "string", "minLength": 1},
                "apiKey": obj({"existingSecret": SECRET_NAME, "key": {"type": "string", "minLength": 1}},
                              desc="a virtual key the helm test pod sends as its bearer token"),
            }
        ),
    },
    required=["image", "providers", "nats", "router"],
)
SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "switchyard chart values", **SCHEMA}


def render():
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
