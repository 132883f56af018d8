// Package argocd holds the Argo CD customizations for twilio.loquent.io
// resources: Lua health checks (health/), resource actions (actions/) and an
// argocd-cm snippet that installs them (argocd-cm-snippet.yaml). The Go code
// only tests them, with the Lua interpreter Argo CD uses, against the
// fixtures in testdata/.
package argocd
