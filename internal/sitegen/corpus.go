package sitegen

// Word and sentence pools for generated talk notes. Placeholders in braces
// are replaced by (*writer).fill: {tool}, {thing}, {other}, {n}, {ms},
// {pct}, {team}.

// Tags is the fixed pool of tags generated pages draw from.
var Tags = []string{
	"kubernetes", "gitops", "flux", "networking", "dns", "ebpf",
	"service-mesh", "observability", "opentelemetry", "prometheus",
	"security", "supply-chain", "policy", "storage", "platform",
	"developer-experience", "sre", "multi-cluster", "scheduling", "finops",
	"ci", "containers", "wasm", "community",
}

// area groups the vocabulary of one field, so that a generated talk reads
// as being about one thing.
type area struct {
	tags   []string // indexes into Tags would be brittle; names instead
	tools  []string
	things []string
}

var areas = []area{
	{
		tags:   []string{"kubernetes", "scheduling", "multi-cluster"},
		tools:  []string{"Cluster API", "Karpenter", "KEDA", "kubeadm", "the descheduler"},
		things: []string{"cluster upgrades", "node pools", "batch workloads", "GPU nodes", "control planes", "autoscaling"},
	},
	{
		tags:   []string{"gitops", "flux", "ci"},
		tools:  []string{"Flux", "Kustomize", "Helm", "image automation", "Renovate"},
		things: []string{"fleet repositories", "release pipelines", "image updates", "environment promotion", "drift detection"},
	},
	{
		tags:   []string{"networking", "dns", "ebpf", "service-mesh"},
		tools:  []string{"Cilium", "CoreDNS", "Envoy Gateway", "Linkerd", "Gateway API"},
		things: []string{"north-south traffic", "anycast ingress", "network policies", "mTLS", "DNS resolution", "load balancing"},
	},
	{
		tags:   []string{"observability", "opentelemetry", "prometheus", "sre"},
		tools:  []string{"OpenTelemetry", "Prometheus", "Thanos", "the collector", "Grafana"},
		things: []string{"tail sampling", "metrics cardinality", "SLO alerting", "log pipelines", "exemplars", "native histograms"},
	},
	{
		tags:   []string{"security", "supply-chain", "policy"},
		tools:  []string{"Sigstore", "Kyverno", "Falco", "cert-manager", "SPIFFE"},
		things: []string{"image signatures", "admission policies", "secrets rotation", "runtime detection", "SBOMs", "workload identity"},
	},
	{
		tags:   []string{"storage", "kubernetes", "sre"},
		tools:  []string{"Rook", "Velero", "CloudNativePG", "the CSI snapshotter", "etcd"},
		things: []string{"stateful workloads", "volume snapshots", "database failover", "backups", "etcd defragmentation"},
	},
	{
		tags:   []string{"platform", "developer-experience", "finops"},
		tools:  []string{"Backstage", "Crossplane", "OpenCost", "a service catalog", "golden path templates"},
		things: []string{"internal platforms", "self-service databases", "cost allocation", "scorecards", "onboarding"},
	},
	{
		tags:   []string{"containers", "wasm", "supply-chain"},
		tools:  []string{"containerd", "ko", "BuildKit", "wasmtime", "go-containerregistry"},
		things: []string{"reproducible images", "base image updates", "multi-arch builds", "image layers", "cold starts"},
	},
}

var titlePatterns = []string{
	"{Thing} with {tool}",
	"{Thing} in production: what we learned",
	"Scaling {thing} to {n} clusters",
	"{tool} at {team}",
	"Migrating {thing} to {tool}",
	"A year of {thing}",
	"{Thing} without the pain",
	"Debugging {thing} at 3 a.m.",
	"Five mistakes we made with {thing}",
	"{tool} deep dive: {thing}",
}

var teams = []string{
	"a streaming platform", "a national railway", "a payments company",
	"a public broadcaster", "an online retailer", "a research lab",
	"a logistics company", "an insurance group", "a game studio", "a bank",
}

var headings = []string{
	"Context", "Architecture", "What broke", "Numbers", "Rollout",
	"Configuration", "Lessons", "Open questions", "Trade-offs", "Q&A",
	"Migration", "Operations", "Testing it", "Costs",
}

var sentences = []string{
	"The team runs {thing} for {n} services across four regions.",
	"{tool} replaced a set of shell scripts that nobody wanted to touch.",
	"Their first attempt at {thing} failed because the defaults assume a single cluster.",
	"Most incidents came from configuration drift, not from bugs in {tool}.",
	"After the migration, p99 latency dropped from {ms} ms to a third of that.",
	"They measure {thing} per team, not per cluster, so that owners see their own numbers.",
	"The rollout took {n} weeks, one environment at a time.",
	"{tool} is configured entirely from Git; manual changes are reverted within minutes.",
	"The speaker was candid that {thing} is still the part that pages them most.",
	"Roughly {pct} % of the effort went into documentation and training.",
	"Upgrades are boring now, which was the goal.",
	"They compared {tool} with {other} and picked the one their on-call engineers could debug.",
	"A staging environment that mirrors production caught most of the regressions.",
	"Every change to {thing} goes through the same pull request review as application code.",
	"The hardest part was deciding who owns {thing} when two teams depend on it.",
	"Alerts fire on symptoms users notice, never on CPU usage alone.",
	"Load tests with {n} virtual users showed the bottleneck was DNS, not the application.",
	"They keep a runbook next to every alert and review it after each incident.",
	"Defaults matter: {pct} % of teams never change them.",
	"The audience asked about multi-tenancy; the answer was namespaces plus policy, nothing fancier.",
}

var listItems = []string{
	"Pin versions of everything, including the tools that pin versions.",
	"Start with one team that wants {thing}, not with a mandate.",
	"Put {tool} behind a feature flag for the first weeks.",
	"Write the rollback procedure before the rollout procedure.",
	"Keep dashboards in Git next to the service they describe.",
	"Limit the blast radius: one cluster, one namespace, one tenant.",
	"Automate the boring checks, review the interesting ones.",
	"Measure before and after; anecdotes do not survive a budget review.",
	"Delete what nobody uses; every component is an upgrade to plan.",
	"Test failure modes on purpose, during working hours.",
	"Document the decision, not only the configuration.",
	"Budget time for upgrades of {tool} every quarter.",
}

var inlineMath = []string{
	`$p_{99}$`,
	`$\lambda = 1 / \mu$`,
	`$O(n \log n)$`,
	`$1 - (1-p)^k$`,
	`$\sum_i w_i = 1$`,
	`$\frac{\Delta t}{t_0}$`,
	`$E[X] = np$`,
	`$2^{n}$`,
}

var blockMath = []string{
	`L = \lambda \cdot W`,
	`b = \frac{\text{errors}/\text{requests}}{1 - T}`,
	`P(\text{at least one failure}) = 1 - \prod_{i=1}^{n} (1 - p_i)`,
	`C = \sum_{n} c_n \left( \alpha \frac{r^{cpu}_n}{R^{cpu}_n} + (1 - \alpha) \frac{r^{mem}_n}{R^{mem}_n} \right)`,
	`\text{availability} = \frac{\text{MTBF}}{\text{MTBF} + \text{MTTR}}`,
}

var noticeStyles = []string{"info", "note", "tip", "warning", "important", "caution"}

var buttonStyles = []string{"primary", "info", "tip", "secondary", "transparent"}

var codeBlocks = []struct {
	lang string
	code string
}{
	{"yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {slug}
  namespace: notes
spec:
  replicas: {n}
  selector:
    matchLabels:
      app: {slug}
  template:
    metadata:
      labels:
        app: {slug}
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: app
          image: ghcr.io/acme/{slug}:main-abc1234-1746598316
          resources:
            requests:
              cpu: 100m
              memory: 128Mi`},
	{"sh", `kubectl -n notes rollout status deploy/{slug} --timeout=120s
kubectl -n notes get events --sort-by=.lastTimestamp | tail -n {n}`},
	{"go", `func retry(ctx context.Context, attempts int, f func() error) error {
	var err error
	for i := range attempts {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(1<<i) * 100 * time.Millisecond):
		}
	}
	return err
}`},
	{"promql", `sum by (namespace) (
  rate(container_cpu_usage_seconds_total{namespace="{slug}"}[5m])
) / sum by (namespace) (kube_pod_container_resource_requests{resource="cpu"})`},
	{"yaml", `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {slug}
  namespace: flux-system
spec:
  interval: 10m
  path: ./apps/{slug}
  prune: true
  sourceRef:
    kind: GitRepository
    name: fleet`},
	{"text", `{slug}.notes.svc.cluster.local.  30  IN  A  10.96.{octet}.17`},
}

var mermaidDiagrams = []string{
	`flowchart LR
  Dev[Developer] -->|pull request| Git[(Git)]
  Git --> CI[CI pipeline]
  CI -->|image| Reg[(Registry)]
  Reg --> Flux[Flux]
  Flux -->|apply| K8s[{tool}]`,
	`sequenceDiagram
  participant C as Client
  participant G as Gateway
  participant S as {tool}
  C->>G: request
  G->>S: forward (mTLS)
  S-->>G: response
  G-->>C: response`,
	`flowchart TB
  A[{thing}] --> B{healthy?}
  B -->|yes| C[serve traffic]
  B -->|no| D[fail over]
  D --> E[page on-call]`,
}
