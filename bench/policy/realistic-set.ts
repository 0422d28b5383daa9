/**
 * The policy set of bench/policy: what a mid-sized company might run. Fifty
 * Cedar policies in eight documents (one per team, one shared, one of
 * company-wide guards), 150 applications with labels and 50 resources, and a
 * deterministic stream of requests drawn from them.
 *
 * Everything here is fixed text or comes from a seeded PRNG, so two runs, on
 * any machine, evaluate the same requests in the same order.
 */
import type { AuthorizationRequestInput, PolicySourceInput } from "../../services/policy/policy-engine.js";
import { mulberry32, oneOf, pick } from "../support/seeded-random.js";

/** An application as the directory knows it, and what it calls day to day. */
export interface BenchApplication {
  readonly clientId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly calls: readonly BenchCall[];
}

/** One scope on one resource. */
export interface BenchCall {
  readonly resource: string;
  readonly scope: string;
}

/** A resource, the team that owns it, and the scopes its clients ask for. */
export interface BenchResource {
  readonly id: string;
  readonly team: string;
  readonly scopes: readonly string[];
}

// Epoch seconds. Context `time` is epoch seconds and Cedar has no `%`, so a
// daily business-hours rule cannot be written against it; the time rules here
// are windows (a contract period, a change freeze).
const JAN_1_2026 = 1_767_225_600;
const JUL_1_2026 = 1_782_864_000;
const DEC_18_2026 = 1_797_552_000;
const JAN_1_2027 = 1_798_761_600;
const JAN_4_2027 = 1_799_020_800;

const billing = `// billing.cedar: owned by the billing team
@id("billing-read-invoices")
permit (
  principal,
  action in [Action::"invoices.read", Action::"invoices.list"],
  resource == Resource::"billing-api"
)
when { principal.labels has team && principal.labels.team == "billing" };

@id("billing-write-invoices")
permit (
  principal,
  action in [Action::"invoices.write", Action::"invoices.void"],
  resource == Resource::"billing-api"
)
when {
  principal.labels has team && principal.labels.team == "billing" &&
  principal.labels has env && principal.labels.env == "prod"
};

@id("ledger-reconciler")
permit (
  principal == Application::"billing-reconciler",
  action in [Action::"ledger.read", Action::"ledger.post"],
  resource == Resource::"ledger"
);

@id("checkout-payments")
permit (
  principal == Application::"checkout-agent",
  action in [Action::"payments.capture", Action::"payments.read"],
  resource == Resource::"payments-gateway"
);

// Refunds by people-facing agents need a human to approve each one.
@id("refunds-need-approval")
@step_up("approval")
permit (principal, action == Action::"payments.refund", resource == Resource::"payments-gateway")
when { principal.labels has team && ["billing", "support"].contains(principal.labels.team) };

@id("refund-bot-direct")
permit (
  principal == Application::"refund-bot",
  action == Action::"payments.refund",
  resource == Resource::"payments-gateway"
)
when { context.delegation.hops == 0 && context.session.age_seconds < 900 };

permit (principal, action == Action::"tax.calculate", resource == Resource::"tax-service")
when { principal.labels has env && principal.labels.env == "prod" };

@id("subscriptions-billing-growth")
permit (
  principal,
  action in [Action::"subscriptions.read", Action::"subscriptions.write"],
  resource == Resource::"subscriptions"
)
when { principal.labels has team && ["billing", "growth"].contains(principal.labels.team) };

@id("pricing-read")
permit (principal, action == Action::"pricing.read", resource == Resource::"pricing-catalog");

@id("pricing-admin")
permit (
  principal == Application::"pricing-admin",
  action == Action::"pricing.write",
  resource == Resource::"pricing-catalog"
);
`;

const support = `// support.cedar: owned by customer support
@id("support-helpdesk")
permit (
  principal,
  action in [Action::"tickets.read", Action::"tickets.write", Action::"tickets.close"],
  resource == Resource::"helpdesk"
)
when { principal.labels has team && principal.labels.team == "support" };

@id("crm-read")
permit (principal, action == Action::"customers.read", resource == Resource::"crm")
when { principal.labels has team && ["support", "growth", "billing"].contains(principal.labels.team) };

@id("crm-write-prod-support")
permit (principal, action == Action::"customers.write", resource == Resource::"crm")
when {
  principal.labels has team && principal.labels.team == "support" &&
  principal.labels has env && principal.labels.env == "prod"
};

@id("kb-read-anyone")
permit (principal, action == Action::"kb.read", resource == Resource::"kb");

@id("kb-writer")
permit (principal == Application::"kb-writer", action == Action::"kb.write", resource == Resource::"kb");

@id("transcripts-need-approval")
@step_up("approval")
permit (principal, action == Action::"transcripts.read", resource == Resource::"chat-transcripts")
when { principal.labels has team && principal.labels.team == "support" };

@id("helpdesk-triage")
permit (
  principal == Application::"helpdesk-triage",
  action in [Action::"tickets.read", Action::"tickets.write", Action::"customers.read"],
  resource
)
when { resource in [Resource::"helpdesk", Resource::"tickets-db", Resource::"customer-profiles"] };
`;

const data = `// data.cedar: owned by the data platform team
@id("warehouse-query")
permit (principal, action == Action::"warehouse.query", resource == Resource::"warehouse")
when { principal.labels has team && ["data", "finance"].contains(principal.labels.team) };

@id("warehouse-export-needs-approval")
@step_up("approval")
permit (principal, action == Action::"warehouse.export", resource == Resource::"warehouse")
when { principal.labels has team && principal.labels.team == "data" };

@id("warehouse-loader")
permit (
  principal == Application::"warehouse-loader",
  action in [Action::"etl.run", Action::"warehouse.load"],
  resource
)
when { resource in [Resource::"etl-runner", Resource::"warehouse"] };

@id("dashboards-read")
permit (principal, action == Action::"dashboards.read", resource == Resource::"dashboards")
when { principal.labels has team };

@id("ml-trainer-deploys-models")
permit (principal == Application::"ml-trainer", action == Action::"models.deploy", resource == Resource::"ml-models");

@id("pii-vault-data-team")
permit (principal, action == Action::"pii.read", resource == Resource::"pii-vault")
when { principal.labels has team && principal.labels.team == "data" };
`;

const platform = `// platform.cedar: owned by platform engineering
@id("deploy-staging")
permit (
  principal,
  action in [Action::"deploy.trigger", Action::"deploy.rollback"],
  resource == Resource::"k8s-staging"
)
when { principal.labels has team && principal.labels.team == "platform" };

@id("deploy-prod-needs-approval")
@step_up("approval")
permit (principal, action == Action::"deploy.trigger", resource == Resource::"k8s-prod")
when { principal.labels has team && principal.labels.team == "platform" };

@id("deploy-bot-prod")
permit (principal == Application::"deploy-bot", action == Action::"deploy.trigger", resource == Resource::"k8s-prod")
when { context.delegation.hops == 0 };

@id("oncall-rollback")
permit (principal, action == Action::"deploy.rollback", resource == Resource::"k8s-prod")
when { principal.labels has oncall && principal.labels.oncall == "true" };

@id("flags-read")
permit (principal, action == Action::"flags.read", resource == Resource::"feature-flags");

@id("flags-write-prod")
permit (principal, action == Action::"flags.write", resource == Resource::"feature-flags")
when {
  principal.labels has team && ["platform", "growth"].contains(principal.labels.team) &&
  principal.labels has env && principal.labels.env == "prod"
};

@id("secrets-read-prod-services")
permit (principal, action == Action::"secrets.read", resource == Resource::"secrets-vault")
when {
  principal.labels has env && principal.labels.env == "prod" &&
  principal.labels has team && ["platform", "security"].contains(principal.labels.team)
};

@id("secrets-rotator")
permit (principal == Application::"secrets-rotator", action == Action::"secrets.rotate", resource == Resource::"secrets-vault");

@id("dns-needs-approval")
@step_up("approval")
permit (principal, action == Action::"dns.write", resource == Resource::"dns")
when { principal.labels has team && principal.labels.team == "platform" };
`;

const growth = `// growth.cedar: owned by growth marketing
@id("campaigns-edit")
permit (
  principal,
  action in [Action::"campaigns.read", Action::"campaigns.write"],
  resource == Resource::"email-campaigns"
)
when { principal.labels has team && principal.labels.team == "growth" };

@id("campaign-sender")
permit (principal == Application::"campaign-sender", action == Action::"campaigns.send", resource == Resource::"email-campaigns")
when { context.session.age_seconds < 3600 };
`;

const securityFinance = `// security-finance.cedar: owned by security and finance
@id("audit-read-security")
permit (principal, action == Action::"audit.read", resource == Resource::"audit-log")
when { principal.labels has team && principal.labels.team == "security" };

@id("siem-forwarder")
permit (principal == Application::"siem-forwarder", action in [Action::"siem.ingest", Action::"audit.read"], resource)
when { resource in [Resource::"siem", Resource::"audit-log"] };

@id("iam-admin-needs-approval")
@step_up("approval")
permit (principal, action == Action::"iam.write", resource == Resource::"iam-admin")
when { principal.labels has team && principal.labels.team == "security" };

@id("payroll-runner")
permit (
  principal == Application::"payroll-runner",
  action in [Action::"payroll.read", Action::"payroll.run"],
  resource == Resource::"payroll"
);

@id("expenses-finance")
permit (
  principal,
  action in [Action::"expenses.read", Action::"expenses.approve"],
  resource == Resource::"expenses"
)
when { principal.labels has team && principal.labels.team == "finance" };
`;

const shared = `// shared.cedar: company-wide tools
permit (
  principal,
  action in [Action::"wiki.read", Action::"docs.read", Action::"search.query", Action::"calendar.read"],
  resource
)
when {
  principal.labels has team &&
  resource in [Resource::"wiki", Resource::"docs-store", Resource::"search", Resource::"calendar"]
};

@id("sandbox-echo")
permit (principal, action == Action::"echo.call", resource == Resource::"sandbox-echo");
`;

const guards = `// guards.cedar: company-wide guards, owned by security; forbid always wins
@id("no-deep-delegation")
forbid (principal, action, resource)
when { context.delegation.hops > 2 };

@id("no-delegated-writes")
forbid (
  principal,
  action in [
    Action::"invoices.write", Action::"invoices.void", Action::"ledger.post", Action::"payments.refund",
    Action::"customers.write", Action::"deploy.trigger", Action::"secrets.rotate", Action::"iam.write",
    Action::"payroll.run"
  ],
  resource
)
when { context.delegation.hops > 1 };

@id("no-stale-sessions")
forbid (principal, action, resource)
when { context.session.age_seconds > 28800 };

// Sandbox apps may only reach the sandbox.
@id("sandbox-catch-all")
forbid (principal, action, resource)
when { principal.labels has env && principal.labels.env == "sandbox" }
unless { resource == Resource::"sandbox-echo" };

@id("contractors-within-contract")
forbid (principal, action, resource)
when {
  principal.labels has employment && principal.labels.employment == "contractor" &&
  (context.time < ${JAN_1_2026} || context.time >= ${JUL_1_2026})
};

@id("year-end-change-freeze")
forbid (principal, action in [Action::"deploy.trigger", Action::"dns.write", Action::"flags.write"], resource)
when { context.time >= ${DEC_18_2026} && context.time < ${JAN_4_2027} };

forbid (principal, action, resource)
when {
  (principal.labels has quarantined && principal.labels.quarantined == "true") ||
  context.delegation.chain.contains("legacy-scraper")
};

@id("pii-needs-clearance")
forbid (principal, action == Action::"pii.read", resource)
unless { principal.labels has pii && principal.labels.pii == "cleared" };

@id("staging-stays-off-prod")
forbid (principal, action, resource)
when {
  principal.labels has env && principal.labels.env == "staging" &&
  resource in [Resource::"k8s-prod", Resource::"payments-gateway", Resource::"secrets-vault", Resource::"payroll"]
};
`;

/** The policy set: 50 policies in 8 documents. */
export const realisticPolicySource: PolicySourceInput = {
  documents: [
    { name: "billing.cedar", text: billing },
    { name: "support.cedar", text: support },
    { name: "data.cedar", text: data },
    { name: "platform.cedar", text: platform },
    { name: "growth.cedar", text: growth },
    { name: "security-finance.cedar", text: securityFinance },
    { name: "shared.cedar", text: shared },
    { name: "guards.cedar", text: guards },
  ],
};

/** The 50 resources, by owning team; `shared` ones are every team's. */
export const resources: readonly BenchResource[] = [
  { id: "billing-api", team: "billing", scopes: ["invoices.read", "invoices.list", "invoices.write", "invoices.void"] },
  { id: "invoices-db", team: "billing", scopes: ["invoices.read", "invoices.write"] },
  { id: "ledger", team: "billing", scopes: ["ledger.read", "ledger.post"] },
  { id: "payments-gateway", team: "billing", scopes: ["payments.read", "payments.capture", "payments.refund"] },
  { id: "tax-service", team: "billing", scopes: ["tax.calculate"] },
  { id: "subscriptions", team: "billing", scopes: ["subscriptions.read", "subscriptions.write"] },
  { id: "pricing-catalog", team: "billing", scopes: ["pricing.read", "pricing.write"] },
  { id: "helpdesk", team: "support", scopes: ["tickets.read", "tickets.write", "tickets.close"] },
  { id: "tickets-db", team: "support", scopes: ["tickets.read", "tickets.write"] },
  { id: "kb", team: "support", scopes: ["kb.read", "kb.write"] },
  { id: "chat-transcripts", team: "support", scopes: ["transcripts.read"] },
  { id: "crm", team: "support", scopes: ["customers.read", "customers.write"] },
  { id: "customer-profiles", team: "support", scopes: ["customers.read", "customers.write"] },
  { id: "sla-monitor", team: "support", scopes: ["sla.read"] },
  { id: "warehouse", team: "data", scopes: ["warehouse.query", "warehouse.export", "warehouse.load"] },
  { id: "etl-runner", team: "data", scopes: ["etl.run"] },
  { id: "dashboards", team: "data", scopes: ["dashboards.read"] },
  { id: "feature-store", team: "data", scopes: ["features.read", "features.write"] },
  { id: "ml-models", team: "data", scopes: ["models.deploy", "models.read"] },
  { id: "event-stream", team: "data", scopes: ["events.publish", "events.consume"] },
  { id: "pii-vault", team: "data", scopes: ["pii.read"] },
  { id: "deploy-pipeline", team: "platform", scopes: ["pipeline.run", "pipeline.read"] },
  { id: "k8s-prod", team: "platform", scopes: ["deploy.trigger", "deploy.rollback"] },
  { id: "k8s-staging", team: "platform", scopes: ["deploy.trigger", "deploy.rollback"] },
  { id: "feature-flags", team: "platform", scopes: ["flags.read", "flags.write"] },
  { id: "secrets-vault", team: "platform", scopes: ["secrets.read", "secrets.rotate"] },
  { id: "dns", team: "platform", scopes: ["dns.write"] },
  { id: "cdn-config", team: "platform", scopes: ["cdn.purge"] },
  { id: "status-page", team: "platform", scopes: ["status.write"] },
  { id: "email-campaigns", team: "growth", scopes: ["campaigns.read", "campaigns.write", "campaigns.send"] },
  { id: "ads-api", team: "growth", scopes: ["ads.read", "ads.write"] },
  { id: "experiments", team: "growth", scopes: ["experiments.read", "experiments.write"] },
  { id: "referral-service", team: "growth", scopes: ["referrals.read"] },
  { id: "landing-pages", team: "growth", scopes: ["pages.publish"] },
  { id: "audit-log", team: "security", scopes: ["audit.read"] },
  { id: "siem", team: "security", scopes: ["siem.ingest", "siem.query"] },
  { id: "iam-admin", team: "security", scopes: ["iam.write", "iam.read"] },
  { id: "vuln-scanner", team: "security", scopes: ["scans.run"] },
  { id: "key-management", team: "security", scopes: ["keys.rotate"] },
  { id: "payroll", team: "finance", scopes: ["payroll.read", "payroll.run"] },
  { id: "expenses", team: "finance", scopes: ["expenses.read", "expenses.approve"] },
  { id: "procurement", team: "finance", scopes: ["purchases.create"] },
  { id: "gl-export", team: "finance", scopes: ["gl.export"] },
  { id: "forecasts", team: "finance", scopes: ["forecasts.read"] },
  { id: "wiki", team: "shared", scopes: ["wiki.read"] },
  { id: "calendar", team: "shared", scopes: ["calendar.read"] },
  { id: "search", team: "shared", scopes: ["search.query"] },
  { id: "docs-store", team: "shared", scopes: ["docs.read"] },
  { id: "slack-bridge", team: "shared", scopes: ["chat.post"] },
  { id: "sandbox-echo", team: "shared", scopes: ["echo.call"] },
];

const TEAMS = ["billing", "support", "data", "platform", "growth", "security", "finance"] as const;
type Team = (typeof TEAMS)[number];

const SHARED_CALLS = ["wiki wiki.read", "docs-store docs.read", "search search.query", "calendar calendar.read"];

/**
 * What each team's agents call day to day, as `"<resource> <scope>"`. Mostly
 * what the team's policies grant, plus a few calls that are step-up only or
 * that no policy grants (yet), as in any real directory.
 */
const TEAM_CALLS: Readonly<Record<Team, readonly string[]>> = {
  billing: [
    "billing-api invoices.read", "billing-api invoices.list", "billing-api invoices.write", "payments-gateway payments.refund",
    "tax-service tax.calculate", "subscriptions subscriptions.read", "subscriptions subscriptions.write",
    "pricing-catalog pricing.read", "crm customers.read", "ledger ledger.read", "event-stream events.publish",
  ],
  support: [
    "helpdesk tickets.read", "helpdesk tickets.write", "helpdesk tickets.close", "crm customers.read", "crm customers.write",
    "kb kb.read", "chat-transcripts transcripts.read", "payments-gateway payments.refund", "customer-profiles customers.read",
  ],
  data: [
    "warehouse warehouse.query", "warehouse warehouse.export", "dashboards dashboards.read", "pii-vault pii.read",
    "experiments experiments.read", "feature-store features.read", "kb kb.read",
  ],
  platform: [
    "k8s-staging deploy.trigger", "k8s-staging deploy.rollback", "k8s-prod deploy.trigger", "k8s-prod deploy.rollback",
    "feature-flags flags.read", "feature-flags flags.write", "secrets-vault secrets.read", "dns dns.write", "dashboards dashboards.read",
  ],
  growth: [
    "email-campaigns campaigns.read", "email-campaigns campaigns.write", "subscriptions subscriptions.read", "feature-flags flags.read",
    "feature-flags flags.write", "crm customers.read", "dashboards dashboards.read", "ads-api ads.read",
  ],
  security: ["audit-log audit.read", "iam-admin iam.write", "secrets-vault secrets.read", "siem siem.query", "dashboards dashboards.read"],
  finance: [
    "expenses expenses.read", "expenses expenses.approve", "warehouse warehouse.query", "ledger ledger.read", "payroll payroll.read",
    "gl-export gl.export",
  ],
};

/** Applications with a fixed identity (the ones the policies name, and a sandbox playground), with their own calls. */
const NAMED_APPLICATIONS: readonly BenchApplication[] = [
  named("billing-reconciler", { team: "billing", env: "prod", tier: "1", owner: "billing-oncall" }, [
    "ledger ledger.read", "ledger ledger.post", "billing-api invoices.read",
  ]),
  named("checkout-agent", { team: "billing", env: "prod", tier: "1", owner: "payments" }, [
    "payments-gateway payments.capture", "payments-gateway payments.read", "tax-service tax.calculate",
  ]),
  named("pricing-admin", { team: "billing", env: "prod", tier: "2", owner: "pricing" }, [
    "pricing-catalog pricing.read", "pricing-catalog pricing.write",
  ]),
  named("refund-bot", { team: "support", env: "prod", tier: "1", owner: "support-tools" }, [
    "payments-gateway payments.refund", "crm customers.read",
  ]),
  named("kb-writer", { team: "support", env: "prod", tier: "3", owner: "support-tools" }, ["kb kb.read", "kb kb.write"]),
  named("helpdesk-triage", { team: "support", env: "prod", tier: "2", owner: "support-tools" }, [
    "helpdesk tickets.read", "helpdesk tickets.write", "tickets-db tickets.read", "customer-profiles customers.read",
  ]),
  named("warehouse-loader", { team: "data", env: "prod", tier: "2", owner: "data-eng" }, [
    "etl-runner etl.run", "warehouse warehouse.load",
  ]),
  named("ml-trainer", { team: "data", env: "prod", tier: "2", owner: "ml", pii: "cleared" }, [
    "ml-models models.deploy", "pii-vault pii.read", "warehouse warehouse.query",
  ]),
  named("deploy-bot", { team: "platform", env: "prod", tier: "1", owner: "sre" }, [
    "k8s-prod deploy.trigger", "k8s-staging deploy.trigger",
  ]),
  named("oncall-assistant", { team: "platform", env: "prod", tier: "1", owner: "sre", oncall: "true" }, [
    "k8s-prod deploy.rollback", "feature-flags flags.write", "dashboards dashboards.read",
  ]),
  named("secrets-rotator", { team: "security", env: "prod", tier: "1", owner: "secops" }, [
    "secrets-vault secrets.rotate", "secrets-vault secrets.read",
  ]),
  named("siem-forwarder", { team: "security", env: "prod", tier: "2", owner: "secops" }, ["siem siem.ingest", "audit-log audit.read"]),
  named("campaign-sender", { team: "growth", env: "prod", tier: "3", owner: "lifecycle" }, ["email-campaigns campaigns.send"]),
  named("payroll-runner", { team: "finance", env: "prod", tier: "1", owner: "finance-ops" }, [
    "payroll payroll.read", "payroll payroll.run",
  ]),
  named("legacy-scraper", { team: "growth", env: "staging", quarantined: "true" }, ["crm customers.read", "search search.query"]),
  named("sandbox-playground", { env: "sandbox", owner: "devrel" }, ["sandbox-echo echo.call", "billing-api invoices.read"]),
];

/** The 150 applications: the named ones, then generated `<team>-agent-<n>` ones. */
export const applications: readonly BenchApplication[] = buildApplications(150);

/** Client ids that appear in the request stream's delegation chains. */
const APPLICATION_IDS = applications.map((a) => a.clientId);

function named(clientId: string, labels: Record<string, string>, calls: readonly string[]): BenchApplication {
  return { clientId, labels, calls: calls.map(call) };
}

function call(text: string): BenchCall {
  const [resource = "", scope = ""] = text.split(" ");
  return { resource, scope };
}

function buildApplications(count: number): BenchApplication[] {
  const random = mulberry32(0xca7ac41);
  const result = [...NAMED_APPLICATIONS];
  for (let n = 1; result.length < count; n++) {
    const team = TEAMS[(n - 1) % TEAMS.length]!;
    const labels: Record<string, string> = { owner: `${team}-squad-${1 + Math.floor(random() * 4)}` };
    // A few applications were registered without a team or an env label.
    if (random() >= 0.04) labels["team"] = team;
    const env = pick(random, [["prod", 0.65], ["staging", 0.23], ["sandbox", 0.08], [undefined, 0.04]]);
    if (env !== undefined) labels["env"] = env;
    labels["tier"] = String(1 + Math.floor(random() * 3));
    if (random() < 0.1) labels["employment"] = "contractor";
    if (team === "data" && random() < 0.3) labels["pii"] = "cleared";
    if (team === "platform" && random() < 0.2) labels["oncall"] = "true";
    const calls = [...(env === "sandbox" ? ["sandbox-echo echo.call"] : []), ...TEAM_CALLS[team], ...SHARED_CALLS];
    result.push(named(`${team}-agent-${String(n).padStart(3, "0")}`, labels, calls));
  }
  return result;
}

/**
 * `count` requests drawn from {@link applications} and {@link resources} by a
 * PRNG seeded with `seed`. 85 % are an application making one of its usual
 * calls; 15 % are anything-goes (any resource, any scope of any resource).
 * Sessions (3 % older than the 8 h limit), request times (during 2026),
 * delegation chains (0–4 hops) and approvals vary too, so the stream mixes
 * allow, deny and step-up decisions.
 */
export function drawRequests(count: number, seed: number): AuthorizationRequestInput[] {
  const random = mulberry32(seed);
  const allScopes = [...new Set(resources.flatMap((r) => r.scopes))];

  const requests: AuthorizationRequestInput[] = [];
  for (let i = 0; i < count; i++) {
    const app = oneOf(random, applications);
    const { resource, scope } =
      random() < 0.85 ? oneOf(random, app.calls) : { resource: oneOf(random, resources).id, scope: oneOf(random, allScopes) };
    const hops = pick(random, [[0, 0.7], [1, 0.18], [2, 0.08], [3, 0.03], [4, 0.01]]);
    const approval = pick(random, [
      ["unspecified", 0.82],
      ["pending", 0.05],
      ["approved", 0.1],
      ["rejected", 0.03],
    ] as const);
    requests.push({
      clientId: app.clientId,
      applicationLabels: app.labels,
      resource,
      scope,
      session: {
        sessionId: `ses-${i.toString(36)}`,
        ageSeconds: random() < 0.03 ? 28_800 + Math.floor(random() * 14_400) : Math.floor(random() * 7_200),
        labels: random() < 0.5 ? { channel: "api" } : { channel: "chat", locale: "en-GB" },
      },
      delegationChain: Array.from({ length: hops }, () => oneOf(random, APPLICATION_IDS)),
      timeMs: (JAN_1_2026 + Math.floor(random() * (JAN_1_2027 - JAN_1_2026))) * 1000,
      approvalState: approval,
      approvalKind: approval === "unspecified" ? "" : "approval",
    });
  }
  return requests;
}
