// Package manifests tests the project's deployment manifests: the kustomize
// tree in config/ and the Helm chart in charts/. The tests render both with
// the real tools (kubectl's kustomize, helm built by `make helm`), check
// what they grant and how they run, and apply everything to a real API
// server (envtest) with server-side dry-run.
package manifests
