"""Edge rules of infra/template.yaml that cfn-lint can't know (issue 14, "no one can delay a duress").

Run by scripts/lint-infra with its venv's python (aws-sam-translator is needed):

    lint-infra-edges.py check TEMPLATE.yaml      expand the SAM template, print every broken rule
    lint-infra-edges.py self-test TEMPLATE.yaml  mutate copies of the template, one per rule, and
                                                 fail unless each copy is caught by its own rule
                                                 and the template itself passes

The rules, checked on the template after the real SAM transform (what CloudFormation deploys):
- every route reached before a bearer token is checked (no authorizer) has a per-route throttle
  (rate and burst) on every stage of its API, so a junk flood on it is refused at its own limit;
- no stage throttles a route its API doesn't have (CloudFormation would refuse the deploy);
- the directive, http-api and re-delivery functions each have reserved concurrency whose
  default is not 0, so a flood on http-api can't starve the directive function or the worker,
  and the defaults add up to no more than a standard account can reserve (900);
- every function gets OUTBOX_SHARDS and OUTBOX_HOUSEHOLD_QUOTA from the one parameter each, so
  writers and the worker agree on the shards;
- OutboxPanelGoneAlarm exists, reads OutboxPanelGone and notifies the alarm topic;
  DuressBacklogAlarm reads the real backlog (OutboxBacklog) and the failed re-deliveries
  (DuressRedeliveryRetrying); the dashboard shows OutboxPanelGone and the new alarm.
"""

import copy
import logging
import os
import sys

# The transform fills pseudo parameters from a region; any of the stack's regions will do.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The translator warns about its own usage metrics on every run: noise here.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

RESERVED = ["DirectiveFunction", "HttpApiFunction", "RedeliveryFunction"]
OUTBOX_ENV = {"OUTBOX_SHARDS": "OutboxShards", "OUTBOX_HOUSEHOLD_QUOTA": "OutboxHouseholdQuota"}
GONE_ALARM = "OutboxPanelGoneAlarm"
BACKLOG_ALARM = "DuressBacklogAlarm"
DUMMY = "s3://bucket/value"


class NoManagedPolicies:
    def load(self):
        return {}


def expand(template):
    """The SAM transform, offline, with local code paths swapped for a dummy S3 URI."""
    template = copy.deepcopy(template)
    fn_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(fn_globals.get("CodeUri"), str) and not fn_globals["CodeUri"].startswith("s3://"):
        fn_globals["CodeUri"] = DUMMY
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
                props["CodeUri"] = DUMMY
    return transform(template, {}, NoManagedPolicies())


def default_of(value, parameters):
    """The value a property takes with the parameters' defaults; None if it is unset."""
    if isinstance(value, dict) and "Fn::If" in value:
        # A condition like Has<X>: !Not [!Equals [!Ref X, 0]] guards the property; with the
        # defaults it is set exactly when the "true" branch's default is non-zero.
        value = value["Fn::If"][1]
    if isinstance(value, dict) and "Ref" in value:
        if value["Ref"] == "AWS::NoValue":
            return None
        param = parameters.get(value["Ref"])
        return None if param is None else param.get("Default")
    return value


def as_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def routes(resources):
    """(api resource, route key, guarded by an authorizer) for every route."""
    found = []
    for name, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::ApiGatewayV2::Api" and "Body" in props:
            body = props["Body"]
            schemes = set(body.get("components", {}).get("securitySchemes", {}))
            for path, methods in body.get("paths", {}).items():
                for method, op in methods.items():
                    if not isinstance(op, dict):
                        continue
                    verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    # SAM writes Authorizer: NONE as {"NONE": []}, a scheme that doesn't exist.
                    guarded = any(set(req) & schemes for req in op.get("security") or [])
                    found.append((name, f"{verb} {path}", guarded))
        elif r["Type"] == "AWS::ApiGatewayV2::Route":
            api = props.get("ApiId", {}).get("Ref")
            found.append((api, props.get("RouteKey"), props.get("AuthorizationType", "NONE") != "NONE"))
    return found


def problems(expanded):
    resources = expanded["Resources"]
    parameters = expanded.get("Parameters", {})
    found = []

    # 1. Per-route throttles on the routes reached before any token is checked.
    stages = {}
    for name, r in resources.items():
        if r["Type"] == "AWS::ApiGatewayV2::Stage":
            stages.setdefault(r["Properties"].get("ApiId", {}).get("Ref"), []).append(name)
    all_routes = routes(resources)
    for api, key, guarded in all_routes:
        if guarded:
            continue
        if not stages.get(api):
            found.append(f"unauthenticated route {key}: API {api} has no stage to throttle it")
        for stage in stages.get(api, []):
            settings = resources[stage]["Properties"].get("RouteSettings", {}).get(key, {})
            for limit in ["ThrottlingRateLimit", "ThrottlingBurstLimit"]:
                value = as_number(default_of(settings.get(limit), parameters))
                if value is None or value <= 0:
                    found.append(
                        f"unauthenticated route {key} has no per-route {limit} on stage {stage} "
                        "(a flood on it would be held only by the stage default the management routes use)"
                    )

    # A setting for a route the API doesn't have fails the deploy ("Unable to find Route").
    for api, names in stages.items():
        keys = {key for a, key, _ in all_routes if a == api}
        for stage in names:
            for key in resources[stage]["Properties"].get("RouteSettings", {}):
                if key not in keys:
                    found.append(f"stage {stage} throttles route {key}, which API {api} does not have")

    # 2. Reserved concurrency, non-zero by default.
    for fn in RESERVED:
        props = resources.get(fn, {}).get("Properties", {})
        if fn not in resources:
            found.append(f"{fn} is missing")
            continue
        value = props.get("ReservedConcurrentExecutions")
        if value is None:
            found.append(f"{fn} has no reserved concurrency (a flood elsewhere could starve it)")
        elif not (as_number(default_of(value, parameters)) or 0) > 0:
            found.append(f"{fn}'s reserved concurrency is 0 with the template's defaults")
    # Lambda keeps 100 executions of the account unreserved: with the standard limit of 1,000
    # a region, default reservations above 900 in all would fail the deploy.
    reserved = 0.0
    for fn in RESERVED:
        value = resources.get(fn, {}).get("Properties", {}).get("ReservedConcurrentExecutions")
        reserved += as_number(default_of(value, parameters)) or 0
    if reserved > 900:
        found.append(f"the default reservations add up to {reserved:g}, over the 900 a standard account "
                     "(1,000, less 100 kept unreserved) can give")

    # 3. One outbox shape for every writer and the worker.
    for fn, r in resources.items():
        if r["Type"] != "AWS::Lambda::Function" or fn not in RESERVED:
            continue
        env = r["Properties"].get("Environment", {}).get("Variables", {})
        for var, param in OUTBOX_ENV.items():
            if env.get(var) != {"Ref": param}:
                found.append(f"{fn} does not get {var} from the {param} parameter")

    # 4. The alarms on the real backlog and on records whose panel left the account.
    def metric_names(alarm):
        props = alarm.get("Properties", {})
        names = {props.get("MetricName")}
        for m in props.get("Metrics", []):
            names.add(m.get("MetricStat", {}).get("Metric", {}).get("MetricName"))
        return names - {None}

    gone = resources.get(GONE_ALARM)
    if gone is None or gone["Type"] != "AWS::CloudWatch::Alarm":
        found.append(f"{GONE_ALARM} is missing (records for a panel that left the account, maybe a duress)")
    else:
        if "OutboxPanelGone" not in metric_names(gone):
            found.append(f"{GONE_ALARM} does not read the OutboxPanelGone metric")
        if {"Ref": "AlarmTopic"} not in gone["Properties"].get("AlarmActions", []):
            found.append(f"{GONE_ALARM} does not notify AlarmTopic")
        if not gone["Properties"].get("AlarmDescription"):
            found.append(f"{GONE_ALARM} has no description for the operator")
    backlog = resources.get(BACKLOG_ALARM)
    if backlog is None:
        found.append(f"{BACKLOG_ALARM} is missing")
    else:
        for metric in ["OutboxBacklog", "DuressRedeliveryRetrying"]:
            if metric not in metric_names(backlog):
                found.append(f"{BACKLOG_ALARM} does not read {metric}")
    body = resources.get("Dashboard", {}).get("Properties", {}).get("DashboardBody", "")
    if isinstance(body, dict) and "Fn::Sub" in body:
        body = body["Fn::Sub"]
        body = body[0] if isinstance(body, list) else body
    body = body if isinstance(body, str) else ""
    for needle, what in [('"OutboxPanelGone"', "the OutboxPanelGone metric"),
                         ("${" + GONE_ALARM + ".Arn}", GONE_ALARM)]:
        if needle not in body:
            found.append(f"the dashboard does not show {what}")
    return found


def check(path):
    with open(path) as f:
        template = yaml_parse(f.read())
    try:
        expanded = expand(template)
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM transform error: {cause.message}", file=sys.stderr)
        return 1
    found = problems(expanded)
    for p in found:
        print(f"edge rule: {p}", file=sys.stderr)
    return 1 if found else 0


# --- self-test: each mutation must be caught, by the rule it breaks --------------------------


def res(t, name):
    return t["Resources"][name]


def add_token_less_route(t):
    # A new route someone adds later, without a throttle: the rule must find it by itself.
    res(t, "HttpApiFunction")["Properties"]["Events"]["Probe"] = {
        "Type": "HttpApi",
        "Properties": {"ApiId": {"Ref": "HttpApi"}, "Method": "GET", "Path": "/probe", "Auth": {"Authorizer": "NONE"}},
    }


def drop_route_setting(key, limit=None):
    def mutate(t):
        settings = res(t, "HttpApi")["Properties"]["RouteSettings"]
        if limit is None:
            del settings[key]
        else:
            del settings[key][limit]
    return mutate


def rename_route_setting(key, new_key):
    def mutate(t):
        settings = res(t, "HttpApi")["Properties"]["RouteSettings"]
        settings[new_key] = settings.pop(key)
    return mutate


def drop_property(resource, prop):
    def mutate(t):
        del res(t, resource)["Properties"][prop]
    return mutate


def set_default(param, value):
    def mutate(t):
        t["Parameters"][param]["Default"] = value
    return mutate


def drop_global_env(var):
    def mutate(t):
        del t["Globals"]["Function"]["Environment"]["Variables"][var]
    return mutate


def drop_resource(name):
    def mutate(t):
        del t["Resources"][name]
        # Keep the template valid otherwise: the dashboard names the alarm too.
        dash = res(t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        dash[0] = dash[0].replace(f'"${{{name}.Arn}}",', "")
    return mutate


def gone_alarm_metric(name):
    def mutate(t):
        res(t, GONE_ALARM)["Properties"]["MetricName"] = name
    return mutate


def backlog_alarm_without(metric):
    def mutate(t):
        props = res(t, BACKLOG_ALARM)["Properties"]
        for m in props["Metrics"]:
            stat = m.get("MetricStat", {}).get("Metric", {})
            if stat.get("MetricName") == metric:
                stat["MetricName"] = "SomethingElse"
    return mutate


def dashboard_without(metric):
    def mutate(t):
        dash = res(t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        dash[0] = dash[0].replace(f'["${{Ns}}","{metric}",{{"label":"panel left the account"}}],', "")
    return mutate


def drop_dashboard_alarm(name):
    def mutate(t):
        dash = res(t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        dash[0] = dash[0].replace(f'"${{{name}.Arn}}",', "")
    return mutate


MUTATIONS = [
    ("webhook route without its throttle", drop_route_setting("POST /webhooks/panel"),
     "unauthenticated route POST /webhooks/panel has no per-route ThrottlingRateLimit"),
    ("fulfillment route without its burst limit", drop_route_setting("POST /google/fulfillment", "ThrottlingBurstLimit"),
     "unauthenticated route POST /google/fulfillment has no per-route ThrottlingBurstLimit"),
    ("a new token-less route without a throttle", add_token_less_route,
     "unauthenticated route GET /probe has no per-route ThrottlingRateLimit"),
    ("http-api without reserved concurrency", drop_property("HttpApiFunction", "ReservedConcurrentExecutions"),
     "HttpApiFunction has no reserved concurrency"),
    ("directive without reserved concurrency", drop_property("DirectiveFunction", "ReservedConcurrentExecutions"),
     "DirectiveFunction has no reserved concurrency"),
    ("directive reservation defaulting to 0", set_default("DirectiveReservedConcurrency", 0),
     "DirectiveFunction's reserved concurrency is 0"),
    ("reservations over what a standard account has", set_default("HttpApiReservedConcurrency", 800),
     "the default reservations add up to 902"),
    ("a throttle for a route that doesn't exist", rename_route_setting("POST /webhooks/panel", "POST /webhooks/panels"),
     "throttles route POST /webhooks/panels, which API HttpApi does not have"),
    ("re-delivery worker without reserved concurrency", drop_property("RedeliveryFunction", "ReservedConcurrentExecutions"),
     "RedeliveryFunction has no reserved concurrency"),
    ("functions without OUTBOX_SHARDS", drop_global_env("OUTBOX_SHARDS"),
     "RedeliveryFunction does not get OUTBOX_SHARDS"),
    ("OutboxPanelGoneAlarm missing", drop_resource(GONE_ALARM),
     f"{GONE_ALARM} is missing"),
    ("OutboxPanelGoneAlarm on another metric", gone_alarm_metric("OutboxBacklog"),
     f"{GONE_ALARM} does not read the OutboxPanelGone metric"),
    ("backlog alarm not on the real backlog", backlog_alarm_without("OutboxBacklog"),
     f"{BACKLOG_ALARM} does not read OutboxBacklog"),
    ("dashboard without OutboxPanelGone", dashboard_without("OutboxPanelGone"),
     "the dashboard does not show the OutboxPanelGone metric"),
    ("dashboard without the gone alarm", drop_dashboard_alarm(GONE_ALARM),
     f"the dashboard does not show {GONE_ALARM}"),
]


def self_test(path):
    with open(path) as f:
        template = yaml_parse(f.read())
    failed = caught = 0
    clean = problems(expand(template))
    if clean:
        print(f"self-test: the template itself breaks edge rules: {clean}", file=sys.stderr)
        failed += 1
    for label, mutate, expected in MUTATIONS:
        mutated = copy.deepcopy(template)
        try:
            mutate(mutated)
        except (KeyError, IndexError) as e:
            print(f"self-test: cannot apply '{label}' (template changed shape? {e!r})", file=sys.stderr)
            failed += 1
            continue
        try:
            found = problems(expand(mutated))
        except InvalidDocumentException as e:
            # The transform refusing the copy would prove nothing about the rule.
            print(f"self-test: '{label}': the mutated copy is not a valid template: "
                  f"{[c.message for c in e.causes]}", file=sys.stderr)
            failed += 1
            continue
        if not any(expected in p for p in found):
            print(f"self-test: '{label}' was NOT caught (expected '{expected}', got {found})", file=sys.stderr)
            failed += 1
        else:
            caught += 1
            print(f"self-test: caught: {label}", file=sys.stderr)
    print(f"self-test: {caught}/{len(MUTATIONS)} mutations caught, the template itself "
          f"{'passes' if not clean else 'FAILS'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "self-test"):
        sys.exit("usage: lint-infra-edges.py check|self-test TEMPLATE.yaml")
    sys.exit(check(sys.argv[2]) if sys.argv[1] == "check" else self_test(sys.argv[2]))
